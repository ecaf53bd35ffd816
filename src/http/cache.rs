//! The decision cache of `POST /v1/is_authorized`: an answer is reused only for the
//! same request bytes, against the same snapshot, and only inside the interval over
//! which nothing the decision read can change.
//!
//! A decision is a function of the request, the snapshot and the instant. The
//! instant enters in two places only: which grants are in force (each grant's
//! `not_before <= now < expires_at`) and whether grants are suspended (the remote
//! feed's deadline, or a clock read before the last refresh). So an answer decided at
//! `t` holds for every `now` in `[t, until)`, where `until` is the first boundary after
//! `t` among the feed deadline and the windows of every grant the request looked up,
//! in force or not. A snapshot swap (any new input: a new generation), a refresh that
//! moves the feed deadline, an instant earlier than `t` (the clock stepped back) or at
//! `until` misses. Suspended answers are never cached: they end on a refresh, not on
//! an instant.
//!
//! What is kept is the answer's JSON up to its decision id, the counts the metrics
//! take, and, when the decision log is on, the record less its id and time, so a hit
//! still counts, logs and numbers its decision as a miss does; only the evaluation is
//! skipped. Entries are weighed in bytes against `--decision-cache-bytes`.

use std::sync::Arc;

use bytes::Bytes;
use jiff::Timestamp;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::audit::DecisionRecord;
use crate::engine::{self, Outcome};
use crate::request::Query;
use crate::snapshot::Snapshot;

/// Bodies longer than this are decided every time: they are rare (entities in the
/// body), and one would take the room of many ordinary requests.
pub const MAX_KEY: usize = 8 * 1024;

/// What an answer is reused for, and what a hit needs to answer, count and log.
#[derive(Debug)]
pub struct Cached {
    generation: u64,
    feed_deadline: Option<Timestamp>,
    feed_refreshed_at: Option<Timestamp>,
    /// The instant it was decided at; an earlier one (a clock stepped back) misses.
    from: Timestamp,
    /// The first instant it may no longer hold.
    until: Timestamp,
    /// The answer's JSON up to the decision id's value (`…,"decision_id":`).
    head: Bytes,
    pub allow: bool,
    /// The grants the answer rests on.
    pub grants: usize,
    /// The decision record without its id and time, when the log is on; boxed, so
    /// entries without one stay small.
    pub record: Option<Box<DecisionRecord>>,
    weight: u64,
}

impl Cached {
    pub fn used_grant(&self) -> bool {
        self.grants > 0
    }

    /// The answer with `decision_id`, byte for byte what a fresh decision returns.
    pub fn answer(&self, decision_id: &str) -> Vec<u8> {
        answer_bytes(&self.head, decision_id)
    }

    fn holds(&self, snapshot: &Snapshot, now: Timestamp) -> bool {
        self.generation == snapshot.generation
            && self.feed_deadline == snapshot.feed_deadline
            && self.feed_refreshed_at == snapshot.feed_refreshed_at
            && self.from <= now
            && now < self.until
    }
}

/// The answer JSON from its head and a decision id.
pub fn answer_bytes(head: &[u8], decision_id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len() + decision_id.len() + 3);
    out.extend_from_slice(head);
    // Serializing a `&str` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut out, decision_id);
    out.push(b'}');
    out
}

/// Splits an answer serialized with an empty decision id (its last field) into the
/// head before the id's value; `None` if the JSON does not end that way.
pub fn head_of(answer: &[u8]) -> Option<&[u8]> {
    let head = answer.strip_suffix(b"\"\"}")?;
    head.ends_with(b"\"decision_id\":").then_some(head)
}

#[derive(Debug, Clone)]
struct Weigh;

impl Weighter<Bytes, Arc<Cached>> for Weigh {
    fn weight(&self, key: &Bytes, value: &Arc<Cached>) -> u64 {
        key.len() as u64 + value.weight
    }
}

/// A bounded map from request bytes to [`Cached`] answers; off when sized 0.
#[derive(Debug)]
pub struct DecisionCache {
    cache: Option<Cache<Bytes, Arc<Cached>, Weigh>>,
}

/// What one entry costs beyond the bytes of its key, answer and record: its fixed
/// fields, the allocator's headers of its three allocations, and the map's slot (with
/// its share of the ghost entries). Measured against RSS under churn, it is close.
const OVERHEAD: u64 = std::mem::size_of::<Cached>() as u64 + 160;

impl DecisionCache {
    /// A cache holding at most about `bytes` of entries; `0` turns it off.
    pub fn new(bytes: usize) -> Self {
        Self {
            cache: (bytes > 0).then(|| {
                // Ordinary entries weigh ~500 bytes; the estimate only sizes the map.
                let items = (bytes / 500).max(16);
                Cache::with_weighter(items, bytes as u64, Weigh)
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// The cached answer to `body` that holds against `snapshot` at `now`.
    pub fn get(&self, body: &[u8], snapshot: &Snapshot, now: Timestamp) -> Option<Arc<Cached>> {
        let cache = self.cache.as_ref()?;
        if body.len() > MAX_KEY {
            return None;
        }
        cache.get(body).filter(|hit| hit.holds(snapshot, now))
    }

    /// Keeps the answer whose JSON up to the decision id's value is `head`, decided
    /// for `body` against `snapshot` at `now`.
    pub fn insert(
        &self,
        body: &[u8],
        snapshot: &Snapshot,
        now: Timestamp,
        head: &[u8],
        seed: Seed,
    ) {
        let Some(cache) = &self.cache else {
            return;
        };
        if body.len() > MAX_KEY {
            return;
        }
        // The kept JSON is no longer than the body it came in.
        let record_weight = seed
            .record
            .as_ref()
            .map_or(0, |r| record_weight(r) + body.len() as u64);
        let entry = Cached {
            generation: snapshot.generation,
            feed_deadline: snapshot.feed_deadline,
            feed_refreshed_at: snapshot.feed_refreshed_at,
            from: now,
            until: seed.until,
            weight: head.len() as u64 + record_weight + OVERHEAD,
            head: Bytes::copy_from_slice(head),
            allow: seed.allow,
            grants: seed.grants,
            record: seed.record,
        };
        // A copy: the body's bytes may share the connection's read buffer, which the
        // cache must not keep alive.
        cache.insert(Bytes::copy_from_slice(body), Arc::new(entry));
    }
}

/// What a fresh decision leaves for the cache: how long it holds and what a hit
/// needs besides the answer.
#[derive(Debug)]
pub struct Seed {
    until: Timestamp,
    allow: bool,
    grants: usize,
    record: Option<Box<DecisionRecord>>,
}

impl Seed {
    /// The seed of `outcome`, or `None` if it cannot be reused (grants suspended).
    /// `record` is the decision record, whose id and time a hit replaces.
    pub fn new(
        snapshot: &Snapshot,
        query: &Query,
        outcome: &Outcome,
        now: Timestamp,
        record: Option<DecisionRecord>,
    ) -> Option<Self> {
        Some(Self {
            until: valid_until(snapshot, query, now)?,
            allow: outcome.is_allow(),
            grants: outcome.grants.len(),
            record: record.map(Box::new),
        })
    }
}

/// The first instant after `now` at which `query`'s decision may change: the feed
/// deadline, or a boundary of the window of a grant the decision looked up. `None`
/// while grants are suspended.
pub fn valid_until(snapshot: &Snapshot, query: &Query, now: Timestamp) -> Option<Timestamp> {
    if snapshot.grants_suspended(now) {
        return None;
    }
    let mut until = snapshot.feed_deadline.unwrap_or(Timestamp::MAX);
    // Every grant `decide` looks up, whatever its window: the ones out of it now are
    // the ones that can come into force.
    for grant in engine::principal_grants(snapshot, query, |_| true) {
        for boundary in [grant.not_before, grant.expires_at] {
            if boundary > now && boundary < until {
                until = boundary;
            }
        }
    }
    Some(until)
}

/// Bytes a record holds, roughly; its kept JSON is weighed apart.
fn record_weight(record: &DecisionRecord) -> u64 {
    let strings = record.principal.len()
        + record.action.len()
        + record.resource.len()
        + record.reasons.iter().map(String::len).sum::<usize>()
        + record.errors.iter().map(String::len).sum::<usize>()
        + record.grants.len() * 160
        + record.near_misses.len() * 96;
    (std::mem::size_of::<DecisionRecord>() + strings + 128) as u64
}

#[cfg(test)]
mod tests;
