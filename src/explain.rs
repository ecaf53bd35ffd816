//! Why a decision came out as it did: the satisfied permits and grants, the forbids
//! that won, evaluation errors and, for a Deny, the grants that would have allowed
//! it had they been in force ("near misses"), as data and as one sentence.
//!
//! Pure like the engine (no I/O, no clock), and off the decision path: an
//! explanation is computed only when asked for (`authorize --explain`,
//! `?explain=true`). The one exception is [`near_misses`], which the decision log
//! asks for on a Deny; it costs a lookup unless the principal (or one of its groups)
//! holds grants out of their window, and then one evaluation of those grants' links.
//!
//! Near misses are exact, not a heuristic: roles are `permit` templates, so taking a
//! grant as in force can add a satisfied permit but never a satisfied forbid. A Deny
//! that no forbid decided becomes an Allow with a grant in force iff the grant's link
//! is satisfied; a Deny a forbid decided stays a Deny whatever grant is added, and its
//! near misses say so (`would_allow: false`).

use std::collections::HashSet;
use std::sync::Arc;

use cedar_policy::PolicyId;
use jiff::Timestamp;
use serde::Serialize;

use crate::engine::{self, EvalError, Outcome};
use crate::feed::Grant;
use crate::request::Query;
use crate::snapshot::{Snapshot, Suspension};

/// Why a decision came out as it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    /// `Allow` or `Deny`, as decided.
    pub decision: &'static str,
    /// The nearest reason in one sentence.
    pub summary: String,
    /// Static policies whose `permit` the request satisfies, sorted. On a Deny that a
    /// forbid decided, these are the permits the forbid won over.
    pub satisfied_permits: Vec<String>,
    /// Grants in force whose link the request satisfies, sorted.
    pub satisfied_grants: Vec<String>,
    /// The forbids that decided a Deny, sorted.
    pub deciding_forbids: Vec<String>,
    /// Policies that failed to evaluate (they count as not satisfied).
    pub errors: Vec<EvalError>,
    /// Why grants were not considered at all, when the feed has them suspended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grants_suspended: Option<&'static str>,
    /// For a Deny: grants out of their window (or suspended) that the request would
    /// satisfy, nearest first.
    pub near_misses: Vec<NearMiss>,
}

/// A grant the request would satisfy if it were in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NearMiss {
    pub grant: String,
    pub role: String,
    /// The grantee: the principal itself or one of its groups.
    pub principal: String,
    pub scope: String,
    pub not_before: Timestamp,
    pub expires_at: Timestamp,
    pub status: Status,
    /// False when a forbid would still win with this grant in force.
    pub would_allow: bool,
}

impl NearMiss {
    /// The instant that put the grant out of reach: when it expired, or when it
    /// starts; `None` for a grant in its window whose feed is suspended.
    pub fn at(&self) -> Option<Timestamp> {
        match self.status {
            Status::Expired => Some(self.expires_at),
            Status::NotStarted => Some(self.not_before),
            Status::Suspended => None,
        }
    }
}

/// Why a near-miss grant did not apply at the decision's instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// `now >= expires_at`.
    Expired,
    /// `now < not_before`.
    NotStarted,
    /// In its window, but the feed is stale (or not there yet): grants are suspended.
    Suspended,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::NotStarted => "not_started",
            Self::Suspended => "suspended",
        }
    }

    fn of(grant: &Grant, now: Timestamp) -> Self {
        if now >= grant.expires_at {
            Self::Expired
        } else if now < grant.not_before {
            Self::NotStarted
        } else {
            Self::Suspended
        }
    }
}

/// Decides `query` as of `now` and explains the outcome.
pub fn explain(snapshot: &Snapshot, query: &Query, now: Timestamp) -> Explanation {
    let outcome = engine::decide(snapshot, query, now);
    explain_outcome(snapshot, query, now, &outcome)
}

/// Explains `outcome`, which must be `engine::decide(snapshot, query, now)`.
pub fn explain_outcome(
    snapshot: &Snapshot,
    query: &Query,
    now: Timestamp,
    outcome: &Outcome,
) -> Explanation {
    let suspension = snapshot.suspension(now);
    let mut permits: Vec<String> = Vec::new();
    let mut grants: Vec<String> = Vec::new();
    let mut forbids: Vec<String> = Vec::new();
    if outcome.is_allow() {
        let used: HashSet<&PolicyId> = outcome.grants.iter().map(|g| &g.id).collect();
        for reason in &outcome.reasons {
            if used.contains(reason) {
                grants.push(reason.to_string());
            } else {
                permits.push(reason.to_string());
            }
        }
    } else if !outcome.reasons.is_empty() {
        // A forbid decided it; what it won over takes evaluations of its own, since
        // Cedar names only the forbids of a Deny.
        forbids = outcome.reasons.iter().map(ToString::to_string).collect();
        permits = engine::satisfied_static_permits(snapshot, query)
            .iter()
            .map(ToString::to_string)
            .collect();
        let active = engine::in_force_grants(snapshot, query, now);
        grants = engine::satisfied_grants(snapshot, query, &active)
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
    }
    // With no forbid and no permit satisfied there is nothing to evaluate again:
    // either would have made the answer say so.
    let near_misses = if outcome.is_allow() {
        Vec::new()
    } else {
        find_near_misses(snapshot, query, now, forbids.is_empty())
    };
    let summary = summary(
        outcome,
        &permits,
        &grants,
        &forbids,
        &near_misses,
        suspension,
    );
    Explanation {
        decision: if outcome.is_allow() { "Allow" } else { "Deny" },
        summary,
        satisfied_permits: permits,
        satisfied_grants: grants,
        deciding_forbids: forbids,
        errors: outcome.errors.clone(),
        grants_suspended: suspension.map(suspension_words),
        near_misses,
    }
}

/// The near misses of a Deny that no forbid decided: the grants that would have
/// turned it into an Allow. Empty for an Allow or a forbid's Deny, and at the cost of
/// a lookup when the principal and its groups hold no grant out of its window.
pub fn near_misses(
    snapshot: &Snapshot,
    query: &Query,
    now: Timestamp,
    outcome: &Outcome,
) -> Vec<NearMiss> {
    if outcome.is_allow() || !outcome.reasons.is_empty() || snapshot.grants.is_empty() {
        return Vec::new();
    }
    find_near_misses(snapshot, query, now, true)
}

fn find_near_misses(
    snapshot: &Snapshot,
    query: &Query,
    now: Timestamp,
    would_allow: bool,
) -> Vec<NearMiss> {
    let suspended = snapshot.grants_suspended(now);
    // While grants are suspended, the ones in their window missed too.
    let candidates = engine::principal_grants(snapshot, query, |g| suspended || !g.in_force(now));
    if candidates.is_empty() {
        return Vec::new();
    }
    let (satisfied, _) = engine::satisfied_grants(snapshot, query, &candidates);
    if satisfied.is_empty() {
        return Vec::new();
    }
    let satisfied: HashSet<&PolicyId> = satisfied.iter().collect();
    let mut misses: Vec<(Arc<Grant>, NearMiss)> = candidates
        .into_iter()
        .filter(|g| satisfied.contains(&g.id))
        .map(|g| {
            let miss = NearMiss {
                grant: crate::feed::raw_id(&g.id).to_owned(),
                role: crate::feed::raw_id(&g.role).to_owned(),
                principal: g.principal.to_string(),
                scope: g.scope.to_string(),
                not_before: g.not_before,
                expires_at: g.expires_at,
                status: Status::of(&g, now),
                would_allow,
            };
            (g, miss)
        })
        .collect();
    // Nearest first: a suspended grant is in its window; otherwise the one whose
    // window edge is closest to `now`.
    misses.sort_by(|(_, a), (_, b)| {
        let distance = |m: &NearMiss| {
            m.at().map_or(jiff::SignedDuration::ZERO, |at| {
                now.duration_since(at).abs()
            })
        };
        distance(a)
            .cmp(&distance(b))
            .then_with(|| a.grant.cmp(&b.grant))
    });
    misses.into_iter().map(|(_, m)| m).collect()
}

fn suspension_words(suspension: Suspension) -> &'static str {
    match suspension {
        Suspension::Stale => "the feed is stale",
        Suspension::ClockStepBack => "the clock stepped back behind the last feed refresh",
        Suspension::WaitingForFirstFeed => "waiting for the first grant feed",
    }
}

fn summary(
    outcome: &Outcome,
    permits: &[String],
    grants: &[String],
    forbids: &[String],
    near_misses: &[NearMiss],
    suspension: Option<Suspension>,
) -> String {
    let named: Vec<String> = permits
        .iter()
        .map(|p| format!("`{p}`"))
        .chain(grants.iter().map(|g| format!("grant `{g}`")))
        .collect();
    if outcome.is_allow() {
        let mut text = format!("allowed by {}", english_list(&named));
        if let Some(until) = outcome.valid_until {
            text.push_str(&format!(" until {until}"));
        }
        return text;
    }
    if !forbids.is_empty() {
        let forbids: Vec<String> = forbids.iter().map(|f| format!("`{f}`")).collect();
        let mut text = format!("forbidden by {}", english_list(&forbids));
        if !named.is_empty() {
            text.push_str(&format!(", which wins over {}", english_list(&named)));
        }
        return text;
    }
    if let Some(nearest) = near_misses.first() {
        let mut text = match (nearest.status, suspension) {
            (Status::Expired, _) => format!(
                "would be allowed by grant `{}`, which expired at {}",
                nearest.grant, nearest.expires_at
            ),
            (Status::NotStarted, _) => format!(
                "would be allowed by grant `{}`, which starts at {}",
                nearest.grant, nearest.not_before
            ),
            (Status::Suspended, why) => format!(
                "grants suspended: {}; grant `{}` would allow it",
                why.map_or("the feed is stale", suspension_words),
                nearest.grant
            ),
        };
        match near_misses.len() - 1 {
            0 => {}
            1 => text.push_str(" (and 1 other grant)"),
            n => text.push_str(&format!(" (and {n} other grants)")),
        }
        return text;
    }
    let mut text = String::from("no policy permits");
    if let Some(why) = suspension {
        text.push_str(&format!("; grants suspended: {}", suspension_words(why)));
    }
    if !outcome.errors.is_empty() {
        let failed: Vec<String> = outcome
            .errors
            .iter()
            .map(|e| format!("`{}`", e.policy_id))
            .collect();
        let verb = if failed.len() == 1 { "fails" } else { "fail" };
        text.push_str(&format!(" ({} {verb} to evaluate)", english_list(&failed)));
    }
    text
}

/// `a`, `a and b`, `a, b and c`.
fn english_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests;
