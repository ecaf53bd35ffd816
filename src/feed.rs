//! The grant feed: parsing it, rejecting bad grants one at a time, and the
//! [`GrantIndex`] keyed by grantee that the engine reads.
//!
//! A feed document that is not JSON of the right shape is an error and changes
//! nothing; inside a good document each grant stands alone, so one bad grant is
//! rejected (and reported) while the others apply.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use cedar_policy::{EntityUid, PolicyId};
use jiff::Timestamp;
use serde::Deserialize;

use crate::policy::Bundle;
use crate::request::parse_uid;

/// A feed that cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("grant feed is not valid JSON at line {line}, column {column}: {message}")]
    Malformed {
        line: usize,
        column: usize,
        message: String,
    },
}

/// Why one grant was left out. The label set of `elevate_grants_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    Malformed,
    DuplicateId,
    IdConflict,
    UnknownRole,
    PrincipalType,
    ScopeType,
    Window,
    TooLong,
}

impl RejectReason {
    pub const ALL: [Self; 8] = [
        Self::Malformed,
        Self::DuplicateId,
        Self::IdConflict,
        Self::UnknownRole,
        Self::PrincipalType,
        Self::ScopeType,
        Self::Window,
        Self::TooLong,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::DuplicateId => "duplicate_id",
            Self::IdConflict => "id_conflict",
            Self::UnknownRole => "unknown_role",
            Self::PrincipalType => "principal_type",
            Self::ScopeType => "scope_type",
            Self::Window => "window",
            Self::TooLong => "too_long",
        }
    }
}

/// One rejected grant: which (by id or position) and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GrantRejection {
    /// The grant's id when it had a readable one.
    pub id: Option<String>,
    /// Position in the feed's `grants` array.
    pub index: usize,
    pub reason: RejectReason,
    pub message: String,
}

impl fmt::Display for GrantRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "grant `{id}`: {}", self.message),
            None => write!(f, "grant #{}: {}", self.index, self.message),
        }
    }
}

/// A validated grant: `principal` may use `role` on `scope` from `not_before` until
/// just before `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: PolicyId,
    pub principal: EntityUid,
    pub role: PolicyId,
    pub scope: EntityUid,
    pub not_before: Timestamp,
    pub expires_at: Timestamp,
    pub ticket: Option<String>,
}

impl Grant {
    /// In force iff `not_before <= now < expires_at`.
    pub fn in_force(&self, now: Timestamp) -> bool {
        self.not_before <= now && now < self.expires_at
    }
}

/// The feed document as it arrives. Each grant is parsed alone into its final form
/// (a bad one becomes an [`Entry::Malformed`], not a bad document), and checked
/// against the policies only when an index is built.
#[derive(Debug, Clone, Deserialize)]
pub struct Document {
    pub revision: String,
    #[serde(default)]
    pub generated_at: Option<Timestamp>,
    /// Shared, so keeping the last good document beside a reload's candidate is free;
    /// and the grants themselves are shared with every index built from it, so a
    /// grant is held in memory once however many snapshots use it.
    #[serde(default)]
    pub grants: Arc<[Entry]>,
}

/// One element of a feed's `grants`, parsed without the policies.
#[derive(Debug, Clone)]
pub enum Entry {
    Parsed(Arc<Grant>),
    Malformed {
        /// The `id` it claims, if it has a string one.
        id: Option<String>,
        message: String,
        /// Whether the shape was right and only a UID failed to parse: such a grant
        /// still takes part in the id checks before it is rejected.
        shape_ok: bool,
    },
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // One element at a time as a `Value`, so a bad grant is rejected alone; the
        // `Value` is dropped as soon as the grant is built.
        let raw = serde_json::Value::deserialize(d)?;
        Ok(Entry::parse(&raw))
    }
}

impl Entry {
    fn parse(raw: &serde_json::Value) -> Self {
        let claimed_id = raw.get("id").and_then(|v| v.as_str()).map(str::to_owned);
        let malformed = |message: String, shape_ok| Entry::Malformed {
            id: claimed_id.clone(),
            message,
            shape_ok,
        };
        let g = match RawGrant::deserialize(raw) {
            Ok(g) => g,
            Err(e) => return malformed(e.to_string(), false),
        };
        if g.id.is_empty() {
            return malformed("`id` is empty".into(), false);
        }
        let principal = match parse_uid(&g.principal) {
            Ok(uid) => uid,
            Err(e) => return malformed(format!("`principal`: {e}"), true),
        };
        let scope = match parse_uid(&g.scope) {
            Ok(uid) => uid,
            Err(e) => return malformed(format!("`scope`: {e}"), true),
        };
        Entry::Parsed(Arc::new(Grant {
            id: PolicyId::new(&g.id),
            principal,
            role: PolicyId::new(&g.role),
            scope,
            not_before: g.not_before,
            expires_at: g.expires_at,
            ticket: g.ticket,
        }))
    }
}

/// Parses a feed document's envelope.
///
/// # Errors
/// The bytes are not a JSON object with a string `revision` and a `grants` array.
pub fn parse_document(bytes: &[u8]) -> Result<Document, FeedError> {
    serde_json::from_slice(bytes).map_err(|e| FeedError::Malformed {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

// Unknown fields are ignored, so the workflow can add fields without breaking sidecars.
#[derive(Deserialize)]
struct RawGrant {
    id: String,
    principal: serde_json::Value,
    role: String,
    scope: serde_json::Value,
    not_before: Timestamp,
    expires_at: Timestamp,
    #[serde(default)]
    ticket: Option<String>,
}

/// Grants by grantee, linked against one bundle's roles. Immutable once built.
#[derive(Debug, Default)]
pub struct GrantIndex {
    pub revision: String,
    pub generated_at: Option<Timestamp>,
    by_principal: HashMap<EntityUid, Box<[Arc<Grant>]>>,
    len: usize,
    pub rejected: Vec<GrantRejection>,
}

impl GrantIndex {
    /// Checks every grant of `doc` against `bundle` and indexes the good ones.
    pub fn build(doc: &Document, bundle: &Bundle) -> Self {
        let mut seen: HashSet<String> = HashSet::new();
        let mut by_principal: HashMap<EntityUid, Vec<Arc<Grant>>> = HashMap::new();
        let mut rejected = Vec::new();
        let mut len = 0;
        for (index, entry) in doc.grants.iter().enumerate() {
            match check_grant(entry, bundle, &seen) {
                Ok(grant) => {
                    seen.insert(raw_id(&grant.id).to_owned());
                    len += 1;
                    by_principal
                        .entry(grant.principal.clone())
                        .or_default()
                        .push(Arc::clone(grant));
                }
                Err((id, reason, message)) => {
                    if reason != RejectReason::DuplicateId
                        && let Some(id) = &id
                    {
                        // A rejected grant still claims its id: a later copy must not
                        // slip in under it.
                        seen.insert(id.clone());
                    }
                    rejected.push(GrantRejection {
                        id,
                        index,
                        reason,
                        message,
                    });
                }
            }
        }
        Self {
            revision: doc.revision.clone(),
            generated_at: doc.generated_at,
            by_principal: by_principal
                .into_iter()
                .map(|(k, v)| (k, v.into_boxed_slice()))
                .collect(),
            len,
            rejected,
        }
    }

    /// The grants held by `principal` itself (in force or not).
    pub fn of(&self, principal: &EntityUid) -> &[Arc<Grant>] {
        self.by_principal.get(principal).map_or(&[], |g| g)
    }

    /// Number of accepted grants.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Accepted grants in force at `now`.
    pub fn in_force_count(&self, now: Timestamp) -> usize {
        self.by_principal
            .values()
            .flat_map(|g| g.iter())
            .filter(|g| g.in_force(now))
            .count()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Grant>> {
        self.by_principal.values().flat_map(|g| g.iter())
    }
}

type Rejected = (Option<String>, RejectReason, String);

/// A policy id as written. Its `Display` escapes quotes, backslashes and control
/// characters, so it must not be used to compare ids or to show them.
pub fn raw_id(id: &PolicyId) -> &str {
    id.as_ref()
}

fn check_grant<'a>(
    entry: &'a Entry,
    bundle: &Bundle,
    seen: &HashSet<String>,
) -> Result<&'a Arc<Grant>, Rejected> {
    let (id, parsed) = match entry {
        Entry::Malformed {
            id,
            message,
            shape_ok: false,
        } => return Err((id.clone(), RejectReason::Malformed, message.clone())),
        Entry::Malformed { id, .. } => (id.clone().unwrap_or_default(), None),
        Entry::Parsed(g) => (raw_id(&g.id).to_owned(), Some(g)),
    };
    let reject = |reason, message: String| (Some(id.clone()), reason, message);
    if seen.contains(&id) {
        return Err(reject(
            RejectReason::DuplicateId,
            format!("id `{id}` appears more than once"),
        ));
    }
    if bundle.ids.contains(&id) {
        return Err(reject(
            RejectReason::IdConflict,
            format!("id `{id}` is also a policy id"),
        ));
    }
    let g = match (parsed, entry) {
        (Some(g), _) => g,
        (None, Entry::Malformed { message, .. }) => {
            return Err(reject(RejectReason::Malformed, message.clone()));
        }
        (None, Entry::Parsed(g)) => g,
    };
    let Some(role) = bundle.roles.get(&g.role) else {
        return Err(reject(
            RejectReason::UnknownRole,
            format!(
                "role `{}` is not an elevation template in the policies",
                g.role
            ),
        ));
    };
    let principal = &g.principal;
    if !bundle.declares(principal.type_name()) {
        return Err(reject(
            RejectReason::PrincipalType,
            format!("principal `{principal}` has a type the schema does not declare"),
        ));
    }
    let scope = &g.scope;
    let scope_ok = match &role.scope_types {
        Some(types) => types.iter().any(|t| t == scope.type_name()),
        None => bundle.declares(scope.type_name()),
    };
    if !scope_ok {
        return Err(reject(
            RejectReason::ScopeType,
            format!("role `{}` cannot be scoped to `{scope}`", g.role),
        ));
    }
    if g.expires_at <= g.not_before {
        return Err(reject(
            RejectReason::Window,
            format!(
                "expires at {} which is not after its start {}",
                g.expires_at, g.not_before
            ),
        ));
    }
    let length = g.not_before.duration_until(g.expires_at);
    if length > role.max_duration {
        return Err(reject(
            RejectReason::TooLong,
            format!(
                "lasts {length:#} but role `{}` allows at most {:#}",
                g.role, role.max_duration
            ),
        ));
    }
    Ok(g)
}

#[cfg(test)]
mod tests;
