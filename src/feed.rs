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
use crate::request::{parse_uid, parse_uid_text};

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

impl Drop for Entry {
    // A document of 100,000 grants is let go of on the reloader when a reload replaces
    // it; each grant it drops is a cache miss, so it may step aside between them.
    fn drop(&mut self) {
        crate::priority::pace();
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Each element is first taken as its raw text, so a bad grant is rejected alone.
        // Most grants are plain (no escapes, no duplicate keys, the usual types) and are
        // read straight from that text; anything else takes the general path through a
        // `Value`, which decides exactly as the feed parser always has.
        let raw = <&'de serde_json::value::RawValue>::deserialize(d)?;
        // A big feed is parsed in one call: the reloader may step aside between grants.
        crate::priority::pace();
        let text = raw.get();
        let mut de = serde_json::Deserializer::from_str(text);
        if let Ok(fast) = serde::Deserializer::deserialize_map(&mut de, FastVisitor)
            && de.end().is_ok()
        {
            return Ok(fast.into_entry());
        }
        // What a `Value` would refuse refuses the whole document, as it did when each
        // element was read as a `Value` in place: checked here with the nesting depth
        // the element has inside the document.
        let mut de = serde_json::Deserializer::from_str(text);
        serde::de::DeserializeSeed::deserialize(Strict(1), &mut de).map_err(element_error)?;
        let value: serde_json::Value = serde_json::from_str(text).map_err(element_error)?;
        Ok(Entry::parse(&value))
    }
}

/// An error inside one element as an error of the document, whose parser adds the
/// position in the document (the element's own would mislead).
fn element_error<E: serde::de::Error>(e: serde_json::Error) -> E {
    let message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    E::custom(message.strip_suffix(&suffix).unwrap_or(&message))
}

/// The nesting depth at which the feed parser has always refused a document: serde_json
/// allows 127 nested containers, and the document and its `grants` array are two.
const MAX_ELEMENT_DEPTH: usize = 126;

/// Reads a JSON value without keeping it, refusing exactly what reading it into a
/// `serde_json::Value` at nesting level `.0` of a grant (the grant itself is 1) would
/// refuse: bad strings, numbers out of range, and too deep a nesting.
struct Strict(usize);

impl<'de> serde::de::DeserializeSeed<'de> for Strict {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.0 >= MAX_ELEMENT_DEPTH {
            return Err(serde::de::Error::custom("recursion limit exceeded"));
        }
        while seq.next_element_seed(Strict(self.0 + 1))?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        if self.0 >= MAX_ELEMENT_DEPTH {
            return Err(serde::de::Error::custom("recursion limit exceeded"));
        }
        while map.next_key_seed(Strict(self.0 + 1))?.is_some() {
            map.next_value_seed(Strict(self.0 + 1))?;
        }
        Ok(())
    }
}

/// The fields of a plain grant, borrowed from the feed's bytes where they hold no
/// escapes (a UID's quotes are escapes, so those are usually copied).
#[derive(Default)]
struct FastGrant<'a> {
    id: Option<Text<'a>>,
    principal: Option<Text<'a>>,
    role: Option<Text<'a>>,
    scope: Option<Text<'a>>,
    not_before: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    ticket: Option<Option<Text<'a>>>,
}

/// A JSON string, borrowed when it can be (serde's `Cow<str>` always copies).
struct Text<'a>(std::borrow::Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> serde::de::Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(std::borrow::Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

/// A grant's keys: the known ones, and the rest (ignored).
enum Key {
    Id,
    Principal,
    Role,
    Scope,
    NotBefore,
    ExpiresAt,
    Ticket,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl serde::de::Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "id" => Key::Id,
                    "principal" => Key::Principal,
                    "role" => Key::Role,
                    "scope" => Key::Scope,
                    "not_before" => Key::NotBefore,
                    "expires_at" => Key::ExpiresAt,
                    "ticket" => Key::Ticket,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// Reads a plain grant; any error only means "take the general path".
struct FastVisitor;

impl<'de> serde::de::Visitor<'de> for FastVisitor {
    type Value = FastGrant<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a grant object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        fn once<T, E: serde::de::Error>(slot: &mut Option<T>, value: T) -> Result<(), E> {
            // A repeated key is left to the general path, which keeps the last one.
            match slot.replace(value) {
                None => Ok(()),
                Some(_) => Err(E::custom("repeated key")),
            }
        }
        let mut g = FastGrant::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => once(&mut g.id, map.next_value::<Text<'de>>()?)?,
                Key::Principal => once(&mut g.principal, map.next_value::<Text<'de>>()?)?,
                Key::Role => once(&mut g.role, map.next_value::<Text<'de>>()?)?,
                Key::Scope => once(&mut g.scope, map.next_value::<Text<'de>>()?)?,
                Key::NotBefore => once(&mut g.not_before, map.next_value::<Timestamp>()?)?,
                Key::ExpiresAt => once(&mut g.expires_at, map.next_value::<Timestamp>()?)?,
                Key::Ticket => once(&mut g.ticket, map.next_value::<Option<Text<'de>>>()?)?,
                Key::Other => map.next_value_seed(Strict(2))?,
            }
        }
        let complete = g.id.is_some()
            && g.principal.is_some()
            && g.role.is_some()
            && g.scope.is_some()
            && g.not_before.is_some()
            && g.expires_at.is_some();
        if complete {
            Ok(g)
        } else {
            Err(serde::de::Error::custom("missing field"))
        }
    }
}

impl FastGrant<'_> {
    /// The entry [`Entry::parse`] makes of the same grant.
    fn into_entry(self) -> Entry {
        let (
            Some(Text(id)),
            Some(Text(principal)),
            Some(Text(role)),
            Some(Text(scope)),
            Some(not_before),
            Some(expires_at),
        ) = (
            self.id,
            self.principal,
            self.role,
            self.scope,
            self.not_before,
            self.expires_at,
        )
        else {
            // `FastVisitor` only returns complete grants.
            return Entry::Malformed {
                id: None,
                message: "missing field".into(),
                shape_ok: false,
            };
        };
        let malformed = |message: String, shape_ok| Entry::Malformed {
            id: Some(id.clone().into_owned()),
            message,
            shape_ok,
        };
        if id.is_empty() {
            return malformed("`id` is empty".into(), false);
        }
        let principal = match parse_uid_text(&principal) {
            Ok(uid) => uid,
            Err(e) => return malformed(format!("`principal`: {e}"), true),
        };
        let scope = match parse_uid_text(&scope) {
            Ok(uid) => uid,
            Err(e) => return malformed(format!("`scope`: {e}"), true),
        };
        Entry::Parsed(Arc::new(Grant {
            id: PolicyId::new(id.as_ref()),
            principal,
            role: PolicyId::new(role.as_ref()),
            scope,
            not_before,
            expires_at,
            ticket: self.ticket.flatten().map(|Text(t)| t.into_owned()),
        }))
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

/// The fields of a plain document, and whether it has a top-level `payload` key (which
/// makes it an envelope for [`crate::signing::open`]).
#[derive(Deserialize)]
struct Plain {
    revision: String,
    #[serde(default)]
    generated_at: Option<Timestamp>,
    #[serde(default)]
    grants: Arc<[Entry]>,
    #[serde(default)]
    payload: Option<serde::de::IgnoredAny>,
}

/// `bytes` as a plain document if they parse as one without a `payload` key: then the
/// same document that [`crate::signing::open`] without keys and [`parse_document`]
/// give, in one pass instead of two (the envelope probe alone reads every byte).
/// `None` for anything else (an envelope, a bad document), which takes that way.
pub fn parse_plain_document(bytes: &[u8]) -> Option<Document> {
    let plain: Plain = serde_json::from_slice(bytes).ok()?;
    plain.payload.is_none().then(|| Document {
        revision: plain.revision,
        generated_at: plain.generated_at,
        grants: plain.grants,
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
    /// The `not_before` and the `expires_at` of every indexed grant whose window is not
    /// empty, each sorted: the grants in force at an instant are those started by then
    /// less those expired by then, counted by binary search (a `/metrics` scrape would
    /// otherwise walk every grant on a request thread).
    starts: Box<[Timestamp]>,
    ends: Box<[Timestamp]>,
}

impl GrantIndex {
    /// Checks every grant of `doc` against `bundle` and indexes the good ones.
    pub fn build(doc: &Document, bundle: &Bundle) -> Self {
        // Ids borrowed from the document, and maps sized once: a big feed is built
        // without a string copy or a rehash per grant.
        let mut seen: HashSet<&str> = HashSet::with_capacity(doc.grants.len());
        let mut by_principal: HashMap<EntityUid, Box<[Arc<Grant>]>> =
            HashMap::with_capacity(doc.grants.len());
        let mut rejected = Vec::new();
        let mut len = 0;
        let mut starts = Vec::with_capacity(doc.grants.len());
        let mut ends = Vec::with_capacity(doc.grants.len());
        for (index, entry) in doc.grants.iter().enumerate() {
            crate::priority::pace();
            match check_grant(entry, bundle, &seen) {
                Ok(grant) => {
                    seen.insert(raw_id(&grant.id));
                    len += 1;
                    if grant.not_before < grant.expires_at {
                        starts.push(grant.not_before);
                        ends.push(grant.expires_at);
                    }
                    // Most grantees hold one grant: a one-element slice, grown by copy
                    // for the few that hold more.
                    match by_principal.get_mut(&grant.principal) {
                        Some(held) => {
                            let mut more = std::mem::take(held).into_vec();
                            more.push(Arc::clone(grant));
                            *held = more.into_boxed_slice();
                        }
                        None => {
                            by_principal
                                .insert(grant.principal.clone(), Box::new([Arc::clone(grant)]));
                        }
                    }
                }
                Err((id, reason, message)) => {
                    if reason != RejectReason::DuplicateId
                        && let Some(claimed) = entry_id(entry)
                    {
                        // A rejected grant still claims its id: a later copy must not
                        // slip in under it.
                        seen.insert(claimed);
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
        // Sized for one grantee per grant; most hold one, some several. A right-sized
        // table saves megabytes, and moving entries one at a time (rather than
        // `shrink_to_fit`, one rehash of milliseconds) lets the reloader step aside.
        let by_principal = if by_principal.len() < by_principal.capacity() / 2 {
            let mut sized = HashMap::with_capacity(by_principal.len());
            for (principal, held) in by_principal {
                sized.insert(principal, held);
                crate::priority::pace();
            }
            sized
        } else {
            by_principal
        };
        paced_sort(&mut starts);
        paced_sort(&mut ends);
        Self {
            revision: doc.revision.clone(),
            generated_at: doc.generated_at,
            by_principal,
            len,
            rejected,
            starts: starts.into_boxed_slice(),
            ends: ends.into_boxed_slice(),
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
        // In force is `not_before <= now < expires_at`. With a non-empty window, a grant
        // expired by `now` has also started by then, so it is counted in both.
        let started = self.starts.partition_point(|t| *t <= now);
        let expired = self.ends.partition_point(|t| *t <= now);
        started.saturating_sub(expired)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Grant>> {
        self.by_principal.values().flat_map(|g| g.iter())
    }
}

type Rejected = (Option<String>, RejectReason, String);

/// Elements sorted and merged at a time by [`paced_sort`].
const SORT_RUN: usize = 4096;

/// Sorts `v` in pieces, stepping aside between them on the reloader: one sort of
/// 100,000 timestamps holds the core for milliseconds.
fn paced_sort<T: Ord + Copy>(v: &mut Vec<T>) {
    paced_sort_by_runs(v, SORT_RUN);
}

/// A bottom-up merge sort: runs of `run` sorted alone, then merged pairwise.
fn paced_sort_by_runs<T: Ord + Copy>(v: &mut Vec<T>, run: usize) {
    let run = run.max(1);
    for chunk in v.chunks_mut(run) {
        chunk.sort_unstable();
        crate::priority::pace();
    }
    let mut width = run;
    let mut merged = Vec::with_capacity(v.len());
    while width < v.len() {
        merged.clear();
        for pair in v.chunks(width.saturating_mul(2)) {
            let (a, b) = pair.split_at(width.min(pair.len()));
            merge_into(a, b, &mut merged, run);
        }
        std::mem::swap(v, &mut merged);
        width = width.saturating_mul(2);
    }
}

fn merge_into<T: Ord + Copy>(a: &[T], b: &[T], out: &mut Vec<T>, run: usize) {
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    let mut since_pace = 0;
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if y < x => b.next(),
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        };
        let Some(next) = next else { break };
        out.push(*next);
        since_pace += 1;
        if since_pace == run {
            since_pace = 0;
            crate::priority::pace();
        }
    }
}

impl Drop for GrantIndex {
    // Freeing 100,000 grants takes tens of milliseconds: one grantee at a time, so the
    // reloader that frees a retired index can step aside between them.
    fn drop(&mut self) {
        for held in self.by_principal.drain() {
            drop(held);
            crate::priority::pace();
        }
    }
}

/// A policy id as written. Its `Display` escapes quotes, backslashes and control
/// characters, so it must not be used to compare ids or to show them.
pub fn raw_id(id: &PolicyId) -> &str {
    id.as_ref()
}

/// The id an entry claims: a parsed grant's, or the one a malformed grant has (the id
/// checks count a grant with a bad shape and no readable id as `""`).
fn entry_id(entry: &Entry) -> Option<&str> {
    match entry {
        Entry::Parsed(g) => Some(raw_id(&g.id)),
        Entry::Malformed {
            id, shape_ok: true, ..
        } => Some(id.as_deref().unwrap_or_default()),
        Entry::Malformed { id, .. } => id.as_deref(),
    }
}

fn check_grant<'a>(
    entry: &'a Entry,
    bundle: &Bundle,
    seen: &HashSet<&str>,
) -> Result<&'a Arc<Grant>, Rejected> {
    let (id, parsed) = match entry {
        Entry::Malformed {
            id,
            message,
            shape_ok: false,
        } => return Err((id.clone(), RejectReason::Malformed, message.clone())),
        Entry::Malformed { id, .. } => (id.as_deref().unwrap_or_default(), None),
        Entry::Parsed(g) => (raw_id(&g.id), Some(g)),
    };
    let reject = |reason, message: String| (Some(id.to_owned()), reason, message);
    if seen.contains(id) {
        return Err(reject(
            RejectReason::DuplicateId,
            format!("id `{id}` appears more than once"),
        ));
    }
    if bundle.ids.contains(id) {
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
