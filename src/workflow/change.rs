//! The workflow's events: one [`Change`] per event, its `kind` and `data` as the log
//! stores them, and how each one changes the state.
//!
//! A change is applied in two steps: [`Workflow::plan`] checks it against the state
//! and works out a [`Step`] without changing anything, and [`Workflow::execute`]
//! performs the step and cannot fail. A live command plans, appends, then executes;
//! a replay at open plans and executes. So the log never holds an event the state
//! refuses, and a reopened workflow went through exactly what the live one did.
//!
//! Events record outcomes (the grant's window, who else a revocation ended), never
//! inputs to decide again: replaying never asks Cedar, so editing policies never
//! rewrites history.

use std::str::FromStr;

use cedar_policy::EntityUid;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Approval, Elevation, Ending, GrantWindow, State, Workflow};

/// One state change, as the `kind` and `data` of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub(super) enum Change {
    /// A new request (an extension too), pending.
    Requested(Requested),
    /// One approval that does not yet meet the quorum.
    Approval(Note),
    /// The approval that meets the quorum: the grant exists from now on.
    Approved(Approved),
    Denied(Note),
    Cancelled(Note),
    Revoked(Ended),
    Relinquished(Ended),
    /// Recorded by `tick`: nobody decided by `at`.
    Lapsed(Boundary),
    /// Recorded by `tick`: the grant ended at `at`.
    Expired(Boundary),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Requested {
    /// The requester, who also gets the grant.
    pub principal: String,
    pub role: String,
    pub scope: String,
    pub duration_seconds: i64,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// When it lapses unless decided; fixed here so a replay needs no configuration.
    pub decide_by: Timestamp,
    /// The role's quorum when asked, for people reading the log; the quorum that
    /// counts is the one the policies say at each approval.
    pub approvals_required: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Note {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Approved {
    pub grant_id: String,
    pub not_before: Timestamp,
    pub expires_at: Timestamp,
    /// The quorum that was met.
    pub approvals_required: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Ended {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Approved extensions of this grant that end with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub with: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Boundary {
    pub at: Timestamp,
}

impl Change {
    /// The event's `kind` and `data`.
    pub fn encode(&self) -> Result<(String, Value), String> {
        let value = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let Value::Object(mut map) = value else {
            return Err("a change is not encoded as an object".into());
        };
        let kind = match map.remove("kind") {
            Some(Value::String(kind)) => kind,
            _ => return Err("a change has no kind".into()),
        };
        let data = map
            .remove("data")
            .unwrap_or(Value::Object(serde_json::Map::new()));
        Ok((kind, data))
    }

    /// Reads an event's `kind` and `data` back.
    pub fn decode(kind: &str, data: &Value) -> Result<Self, String> {
        let tagged = serde_json::json!({"kind": kind, "data": data});
        serde_json::from_value(tagged).map_err(|e| format!("`{kind}` event: {e}"))
    }
}

/// What a change does, worked out by [`Workflow::plan`].
#[derive(Debug)]
pub(super) enum Step {
    /// A new request; `target` is the position of the grant it extends.
    Push {
        elevation: Box<Elevation>,
        target: Option<usize>,
    },
    /// An approval; with `grant`, the one that meets the quorum.
    Vote {
        at: usize,
        approval: Approval,
        grant: Option<GrantWindow>,
    },
    /// These requests end; the pending extensions in `cut` now lapse at `ending.at`.
    End {
        at: Vec<usize>,
        ending: Ending,
        cut: Vec<usize>,
    },
}

impl Workflow {
    /// Checks `change` by `actor` on request `id` at `time` against the state.
    ///
    /// # Errors
    /// The change does not fit: an unknown or repeated id, a request in the wrong
    /// phase, a repeated approver. Only a damaged log or a bug gets here.
    pub(super) fn plan(
        &self,
        actor: &str,
        id: &str,
        time: Timestamp,
        change: Change,
    ) -> Result<Step, String> {
        match change {
            Change::Requested(r) => self.plan_request(id, time, r),
            Change::Approval(note) => self.plan_vote(actor, id, time, note.comment, None),
            Change::Approved(a) => {
                let grant = GrantWindow {
                    id: a.grant_id,
                    not_before: a.not_before,
                    expires_at: a.expires_at,
                };
                if grant.expires_at <= grant.not_before {
                    return Err(format!("grant `{}` expires before it starts", grant.id));
                }
                self.plan_vote(actor, id, time, a.comment, Some(grant))
            }
            Change::Denied(note) => self.plan_end(actor, id, time, State::Denied, note.comment),
            Change::Cancelled(note) => {
                self.plan_end(actor, id, time, State::Cancelled, note.comment)
            }
            Change::Lapsed(b) => self.plan_end(actor, id, b.at, State::Lapsed, None),
            Change::Expired(b) => self.plan_end(actor, id, b.at, State::Expired, None),
            Change::Revoked(e) => self.plan_revoke(actor, id, time, State::Revoked, e),
            Change::Relinquished(e) => self.plan_revoke(actor, id, time, State::Relinquished, e),
        }
    }

    fn plan_request(&self, id: &str, time: Timestamp, r: Requested) -> Result<Step, String> {
        if self.index.contains_key(id) {
            return Err(format!("request `{id}` exists already"));
        }
        let principal = parse_uid("principal", &r.principal)?;
        let scope = parse_uid("scope", &r.scope)?;
        if r.duration_seconds <= 0 {
            return Err("the duration is not positive".into());
        }
        let target = match &r.extends {
            None => None,
            Some(target) => {
                let at = self.position(target)?;
                let granted = self
                    .requests
                    .get(at)
                    .is_some_and(|t| t.grant.is_some() && t.ended.is_none());
                if !granted {
                    return Err(format!("`{target}` is not a grant that can be extended"));
                }
                Some(at)
            }
        };
        let elevation = Elevation {
            id: id.to_owned(),
            principal,
            role: r.role,
            scope,
            duration: SignedDuration::from_secs(r.duration_seconds),
            reason: r.reason,
            ticket: r.ticket,
            on_behalf_of: r.on_behalf_of,
            not_before: r.not_before,
            extends: r.extends,
            requested_at: time,
            decide_by: r.decide_by,
            approvals_required: r.approvals_required,
            approvals: Vec::new(),
            grant: None,
            ended: None,
            extended_by: Vec::new(),
        };
        Ok(Step::Push {
            elevation: Box::new(elevation),
            target,
        })
    }

    fn plan_vote(
        &self,
        actor: &str,
        id: &str,
        time: Timestamp,
        comment: Option<String>,
        grant: Option<GrantWindow>,
    ) -> Result<Step, String> {
        let at = self.position(id)?;
        let e = self.at(at)?;
        if e.grant.is_some() || e.ended.is_some() {
            return Err(format!("request `{id}` is not pending"));
        }
        let by = parse_uid("actor", actor)?;
        if e.approvals.iter().any(|a| a.by == by) {
            return Err(format!("`{actor}` approved request `{id}` already"));
        }
        Ok(Step::Vote {
            at,
            approval: Approval {
                by,
                at: time,
                comment,
            },
            grant,
        })
    }

    fn plan_end(
        &self,
        actor: &str,
        id: &str,
        at_time: Timestamp,
        state: State,
        comment: Option<String>,
    ) -> Result<Step, String> {
        let at = self.position(id)?;
        let e = self.at(at)?;
        let fits = match state {
            State::Denied | State::Cancelled | State::Lapsed => e.grant.is_none(),
            _ => e.grant.is_some(),
        };
        if !fits || e.ended.is_some() {
            return Err(format!(
                "request `{id}` cannot become {state} from where it is"
            ));
        }
        Ok(Step::End {
            at: vec![at],
            ending: Ending {
                state,
                by: actor.to_owned(),
                at: at_time,
                comment,
            },
            cut: self.pending_extensions_of(&[at]),
        })
    }

    fn plan_revoke(
        &self,
        actor: &str,
        id: &str,
        time: Timestamp,
        state: State,
        ended: Ended,
    ) -> Result<Step, String> {
        let Step::End { mut at, ending, .. } =
            self.plan_end(actor, id, time, state, ended.comment)?
        else {
            return Err("unexpected step".into());
        };
        for other in &ended.with {
            let position = self.position(other)?;
            let e = self.at(position)?;
            if e.grant.is_none() || e.ended.is_some() || at.contains(&position) {
                return Err(format!("grant of `{other}` cannot end with `{id}`"));
            }
            at.push(position);
        }
        let cut = self.pending_extensions_of(&at);
        Ok(Step::End { at, ending, cut })
    }

    /// Pending extensions of the requests at `positions`.
    fn pending_extensions_of(&self, positions: &[usize]) -> Vec<usize> {
        positions
            .iter()
            .filter_map(|p| self.requests.get(*p))
            .flat_map(|e| e.extended_by.iter())
            .filter_map(|id| self.index.get(id).copied())
            .filter(|p| {
                self.requests
                    .get(*p)
                    .is_some_and(|e| e.grant.is_none() && e.ended.is_none())
            })
            .collect()
    }

    /// Performs a planned step.
    pub(super) fn execute(&mut self, step: Step) {
        match step {
            Step::Push { elevation, target } => {
                let position = self.requests.len();
                if let Some(target) = target.and_then(|t| self.requests.get_mut(t)) {
                    target.extended_by.push(elevation.id.clone());
                }
                self.index.insert(elevation.id.clone(), position);
                self.open.insert(position);
                self.requests.push(*elevation);
            }
            Step::Vote {
                at,
                approval,
                grant,
            } => {
                if let Some(e) = self.requests.get_mut(at) {
                    e.approvals.push(approval);
                    e.grant = grant;
                }
            }
            Step::End { at, ending, cut } => {
                for position in at {
                    if let Some(e) = self.requests.get_mut(position) {
                        e.ended = Some(ending.clone());
                        self.open.remove(&position);
                    }
                }
                // A pending extension of a grant that ended early can no longer add
                // time without a gap: it lapses now.
                for position in cut {
                    if let Some(e) = self.requests.get_mut(position) {
                        e.decide_by = e.decide_by.min(ending.at);
                    }
                }
            }
        }
    }

    fn position(&self, id: &str) -> Result<usize, String> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| format!("no request `{id}`"))
    }

    fn at(&self, position: usize) -> Result<&Elevation, String> {
        self.requests
            .get(position)
            .ok_or_else(|| format!("no request at position {position}"))
    }
}

fn parse_uid(field: &str, text: &str) -> Result<EntityUid, String> {
    EntityUid::from_str(text).map_err(|_| format!("`{field}` `{text}` is not an entity UID"))
}
