//! The entity store: every entity in a compact encoding with its ancestors computed once
//! at load, and the per-request [`Entities`] slice Cedar evaluates against.
//!
//! Cedar's own `Entities` costs ~5 KB for a user with a few set-valued attributes (its
//! B-tree nodes are allocated whole), so 100,000 users would be half a gigabyte. Here an
//! entity is a type index, its id and one byte string: its ancestors, the entities its
//! attributes and tags name, and the values themselves (~100 bytes for such a user).
//!
//! A request gets an `Entities` of only what evaluation can reach: the principal, the
//! action, the resource, the entities the context and the policies name, and,
//! transitively, every entity their attributes and tags name. Cedar dereferences no
//! other entity: ancestor sets are not values (`x in y` reads `x`'s ancestors, never
//! `y`'s data), so leaving the rest out changes no decision, reason or error. Each
//! entity carries its ancestors as computed at load, so the slice needs no transitive
//! closure; decoded entities sit in a bounded cache as `Arc`s, so a hot principal costs
//! a lookup, not a decode. Building the slice from shared `Arc`s with the closure taken
//! as computed needs `cedar-policy-core` (the same pinned version `cedar-policy` wraps).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::Arc;

use cedar_policy::{Entities, Entity, EntityUid, Schema};
use cedar_policy_core::ast::{
    self, Eid, EntityType, EntityUID, Literal, PartialValue, Value, ValueKind,
};
use cedar_policy_core::entities::{Entities as CoreEntities, NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;
use hashbrown::HashTable;
use serde::de::{Deserializer as _, SeqAccess, Visitor};
use smol_str::SmolStr;

use crate::config::Validation;
use crate::policy::{PolicyError, SourceFile, one_line};

/// Decoded entities kept for reuse, and a quarter as many slices. A decoded user of the
/// benchmark's shape costs ~6 KB and a slice pins the entities it holds, so under
/// churn (every request a different user) the caches and the allocator's slack cost
/// ~30 MB at this size (4,096 cost ~90 MB). Hot principals, their workspaces and
/// their requests' slices stay decoded; a miss costs a few microseconds.
pub const DEFAULT_CACHE_ENTITIES: usize = 1024;

/// Schema findings kept in warn mode; the rest are counted.
const MAX_FINDINGS: usize = 20;

/// The entity data, parsed (with the schema when there is one) and stored compactly.
pub struct EntityStore {
    types: Vec<EntityType>,
    /// Attribute, tag and record field names.
    names: Vec<SmolStr>,
    /// Extension values (`ip(..)`, `decimal(..)`, ...), kept as Cedar made them.
    exts: Vec<Value>,
    /// Every UID the data names; those with data are stored entities.
    nodes: Vec<Node>,
    /// The nodes' ids, end to end.
    ids: String,
    /// The stored entities' encodings, end to end (see `Builder::finish`). Two arenas
    /// instead of two allocations per entity: nothing for the allocator to scatter
    /// among the parser's short-lived allocations, so the store's resident size is
    /// its size.
    data: Vec<u8>,
    table: HashTable<u32>,
    hasher: RandomState,
    stored: usize,
    cache: quick_cache::sync::Cache<u32, Arc<ast::Entity>>,
    /// Slices by the stored entities they were cut from (sorted node indices).
    slices: quick_cache::sync::Cache<Box<[u32]>, Arc<Entities>>,
    actions: Entities,
    /// Schema findings (warn mode only).
    pub findings: Vec<String>,
}

struct Node {
    ty: u32,
    id: Span,
    /// Parents and ancestors, referenced entities, attributes and tags; `NONE` for a
    /// UID that is only named.
    data: Span,
}

/// A range of an arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    const NONE: Self = Self {
        start: u32::MAX,
        len: 0,
    };

    fn is_some(self) -> bool {
        self.start != u32::MAX
    }

    fn of<T>(arena: &[T], start: usize) -> Result<Self, String> {
        let too_big = || "the entity data is too large (over 4 GiB encoded)".to_owned();
        let start_u32 = u32::try_from(start).map_err(|_| too_big())?;
        let len = u32::try_from(arena.len().saturating_sub(start)).map_err(|_| too_big())?;
        if start_u32 == u32::MAX {
            return Err(too_big());
        }
        Ok(Self {
            start: start_u32,
            len,
        })
    }

    fn get<T>(self, arena: &[T]) -> Option<&[T]> {
        if !self.is_some() {
            return None;
        }
        let start = self.start as usize;
        arena.get(start..start.checked_add(self.len as usize)?)
    }

    fn text(self, arena: &str) -> Option<&str> {
        let start = self.start as usize;
        arena.get(start..start.checked_add(self.len as usize)?)
    }
}

impl fmt::Debug for EntityStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntityStore")
            .field("entities", &self.stored)
            .field("findings", &self.findings.len())
            .finish_non_exhaustive()
    }
}

/// The store's own bytes did not decode: memory corruption or a bug, never input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the entity store cannot decode entity `{0}`")]
pub struct Corrupt(pub String);

const T_FALSE: u8 = 0;
const T_TRUE: u8 = 1;
const T_LONG: u8 = 2;
const T_STR: u8 = 3;
const T_UID: u8 = 4;
const T_SET: u8 = 5;
const T_RECORD: u8 = 6;
const T_EXT: u8 = 7;

fn put_uint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    put_uint(out, n as u64);
}

/// A cursor over an encoded entity; every read is checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn uint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.uint()?).ok()
    }

    fn index(&mut self) -> Option<u32> {
        u32::try_from(self.uint()?).ok()
    }

    fn bytes(&mut self, n: usize) -> Option<&[u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
}

impl EntityStore {
    /// Parses entities JSON (or none, for an empty store) against the bundle's schema.
    ///
    /// # Errors
    /// The JSON is not Cedar entities, an entity is defined twice, the hierarchy has a
    /// cycle, or (in strict mode) an entity does not conform to the schema.
    pub fn build(
        file: Option<&SourceFile>,
        schema: Option<&Schema>,
        validation: Validation,
    ) -> Result<Self, PolicyError> {
        Self::build_with_cache(file, schema, validation, DEFAULT_CACHE_ENTITIES)
    }

    /// As [`EntityStore::build`], with room for `cache` decoded entities.
    ///
    /// # Errors
    /// As [`EntityStore::build`].
    pub fn build_with_cache(
        file: Option<&SourceFile>,
        schema: Option<&Schema>,
        validation: Validation,
        cache: usize,
    ) -> Result<Self, PolicyError> {
        let (path, text) = match file {
            Some(f) => (f.path.clone(), f.text.as_str()),
            None => (PathBuf::from("(none)"), "[]"),
        };
        let invalid = |message: String| PolicyError::Entities {
            path: path.clone(),
            message,
        };
        let mut builder = Builder::new(cache.max(1));
        let mut actions_json: Vec<serde_json::Value> = Vec::new();
        let mut problem: Option<String> = None;
        let mut skipped_findings = 0usize;
        let warn = validation == Validation::Warn && schema.is_some();
        // Streamed one entity at a time: a whole-file parse would hold every entity
        // in Cedar's form at once, the very cost this store exists to avoid.
        let streamed = serde_json::Deserializer::from_str(text).deserialize_seq(Each(
            |mut value: serde_json::Value| {
                if problem.is_some() {
                    return;
                }
                if is_action_json(&value) {
                    // Checked against the schema's declarations together, below.
                    actions_json.push(value);
                    return;
                }
                // Warn mode may need the value a second time, for the plain parse.
                let first = if warn {
                    value.clone()
                } else {
                    std::mem::take(&mut value)
                };
                let entity = match Entity::from_json_value(first, schema) {
                    Ok(entity) => entity,
                    Err(err) if warn => {
                        if builder.store.findings.len() < MAX_FINDINGS {
                            builder.store.findings.push(format!(
                                "{}: {}",
                                path.display(),
                                one_line(&err)
                            ));
                        } else {
                            skipped_findings += 1;
                        }
                        match Entity::from_json_value(value, None) {
                            Ok(entity) => entity,
                            Err(err) => {
                                problem = Some(one_line(&err));
                                return;
                            }
                        }
                    }
                    Err(err) => {
                        problem = Some(one_line(&err));
                        return;
                    }
                };
                if let Err(message) = builder.add(entity.as_ref()) {
                    problem = Some(message);
                }
            },
        ));
        if let Some(message) = problem {
            return Err(invalid(message));
        }
        streamed.map_err(|e| invalid(e.to_string()))?;
        if skipped_findings > 0 {
            builder.store.findings.push(format!(
                "{}: {skipped_findings} more entities do not conform to the schema",
                path.display()
            ));
        }

        let actions = action_entities(
            actions_json,
            schema,
            validation,
            &mut builder.store.findings,
            &path,
        )
        .map_err(&invalid)?;
        for action in actions.iter() {
            builder.add(action.as_ref()).map_err(&invalid)?;
        }
        let mut store = builder.finish().map_err(&invalid)?;
        store.actions = store
            .collect_actions()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(store)
    }

    /// How many entities are stored (action entities included).
    pub fn len(&self) -> usize {
        self.stored
    }

    pub fn is_empty(&self) -> bool {
        self.stored == 0
    }

    /// Whether the store holds an entity with this UID.
    pub fn contains(&self, uid: &EntityUid) -> bool {
        self.find(uid.as_ref())
            .and_then(|i| self.node(i))
            .is_some_and(|n| n.data.is_some())
    }

    fn id_of(&self, node: &Node) -> &str {
        node.id.text(&self.ids).unwrap_or_default()
    }

    fn data_of(&self, i: u32) -> Option<&[u8]> {
        self.node(i).and_then(|n| n.data.get(&self.data))
    }

    /// The stored entity with this UID, with its ancestors, as Cedar's `Entity`.
    pub fn get(&self, uid: &EntityUid) -> Option<Entity> {
        let i = self.find(uid.as_ref())?;
        let entity = self.entity(i).ok()??;
        Some(Entity::from(ast::Entity::clone(&entity)))
    }

    /// The UIDs of every stored entity.
    pub fn uids(&self) -> impl Iterator<Item = EntityUid> + '_ {
        (0u32..)
            .zip(&self.nodes)
            .filter(|(_, n)| n.data.is_some())
            .filter_map(|(i, _)| self.uid(i).map(EntityUid::from))
    }

    /// The stored action entities, for cutting the policy slices.
    pub fn action_entities(&self) -> &Entities {
        &self.actions
    }

    fn collect_actions(&self) -> Result<Entities, Corrupt> {
        let actions: Vec<u32> = (0u32..)
            .zip(&self.nodes)
            .filter(|(_, n)| {
                n.data.is_some()
                    && self
                        .types
                        .get(n.ty as usize)
                        .is_some_and(EntityType::is_action)
            })
            .map(|(i, _)| i)
            .collect();
        self.assemble(actions)
    }

    /// The entities evaluation can reach from `roots`: the stored ones among them and
    /// every stored entity their attributes and tags name, transitively.
    ///
    /// # Errors
    /// The store's own encoding does not decode.
    pub fn slice<'a>(
        &self,
        roots: impl IntoIterator<Item = &'a EntityUid>,
    ) -> Result<Arc<Entities>, Corrupt> {
        // A slice depends only on which stored entities its roots are, so it is cached
        // under them: the store never changes, nothing can make an entry stale.
        let mut key: Vec<u32> = roots
            .into_iter()
            .filter_map(|uid| self.find(uid.as_ref()))
            .filter(|&i| self.data_of(i).is_some())
            .collect();
        key.sort_unstable();
        key.dedup();
        if let Some(hit) = self.slices.get(key.as_slice()) {
            return Ok(hit);
        }
        let slice = Arc::new(Entities::from(self.reach(key.clone())?));
        self.slices
            .insert(key.into_boxed_slice(), Arc::clone(&slice));
        Ok(slice)
    }

    /// [`EntityStore::slice`] without the slice cache (decoded entities still come
    /// from theirs): what a slice costs to cut, for benchmarks.
    ///
    /// # Errors
    /// The store's own encoding does not decode.
    pub fn slice_uncached<'a>(
        &self,
        roots: impl IntoIterator<Item = &'a EntityUid>,
    ) -> Result<Entities, Corrupt> {
        self.slice_core(roots).map(Entities::from)
    }

    fn slice_core<'a>(
        &self,
        roots: impl IntoIterator<Item = &'a EntityUid>,
    ) -> Result<CoreEntities, Corrupt> {
        self.reach(
            roots
                .into_iter()
                .filter_map(|uid| self.find(uid.as_ref()))
                .collect(),
        )
    }

    /// The stored entities among `stack` and everything their data names, transitively.
    fn reach(&self, mut stack: Vec<u32>) -> Result<CoreEntities, Corrupt> {
        let mut seen: HashSet<u32> = HashSet::with_capacity(stack.len() * 2);
        let mut taken = Vec::with_capacity(stack.len() * 2);
        while let Some(i) = stack.pop() {
            if !seen.insert(i) {
                continue;
            }
            let Some(data) = self.data_of(i) else {
                continue;
            };
            taken.push(i);
            refs_of(data, &mut stack).ok_or_else(|| self.corrupt(i))?;
        }
        self.assemble_core(taken)
    }

    /// [`EntityStore::slice`] with `extra` entities added (a request's own): they may
    /// name stored entities as parents or in attributes, so those join the slice too,
    /// and ancestors are completed through the new entities.
    ///
    /// # Errors
    /// An `extra` entity is stored already, or the merged hierarchy has a cycle.
    pub fn slice_with<'a>(
        &self,
        roots: impl IntoIterator<Item = &'a EntityUid>,
        extra: Vec<Entity>,
    ) -> Result<Entities, SliceError> {
        let mut named: Vec<EntityUid> = Vec::new();
        for entity in &extra {
            let inner: &ast::Entity = entity.as_ref();
            if self.contains(&entity.uid()) {
                return Err(SliceError::Conflict(entity.uid().to_string()));
            }
            named.extend(inner.ancestors().cloned().map(EntityUid::from));
            for (_, value) in inner.attrs().chain(inner.tags()) {
                if let PartialValue::Value(value) = value {
                    collect_uids(value, &mut named);
                }
            }
        }
        let mut all: Vec<&EntityUid> = roots.into_iter().collect();
        all.extend(named.iter());
        let base = self.slice_core(all)?;
        base.add_entities(
            extra
                .into_iter()
                .map(|e| Arc::new(ast::Entity::clone(e.as_ref()))),
            None::<&NoEntitiesSchema>,
            TCComputation::ComputeNow,
            Extensions::all_available(),
        )
        .map(Entities::from)
        .map_err(|e| SliceError::Invalid(e.to_string()))
    }

    /// Every stored entity as one Cedar `Entities`. Costs what this store saves;
    /// for tools and tests that compare against Cedar's own store.
    ///
    /// # Errors
    /// The store's own encoding does not decode.
    pub fn to_entities(&self) -> Result<Entities, Corrupt> {
        let all: Vec<u32> = (0u32..)
            .zip(&self.nodes)
            .filter(|(_, n)| n.data.is_some())
            .map(|(i, _)| i)
            .collect();
        self.assemble(all)
    }

    fn assemble(&self, indices: Vec<u32>) -> Result<Entities, Corrupt> {
        self.assemble_core(indices).map(Entities::from)
    }

    fn assemble_core(&self, indices: Vec<u32>) -> Result<CoreEntities, Corrupt> {
        let mut arcs = Vec::with_capacity(indices.len());
        for i in indices {
            if let Some(entity) = self.entity(i)? {
                arcs.push(entity);
            }
        }
        // Every entity carries its ancestors as computed over the whole store, and
        // each appears once, so nothing is left to compute or reject.
        CoreEntities::new()
            .add_entities(
                arcs,
                None::<&NoEntitiesSchema>,
                TCComputation::AssumeAlreadyComputed,
                Extensions::all_available(),
            )
            .map_err(|e| Corrupt(e.to_string()))
    }

    fn node(&self, i: u32) -> Option<&Node> {
        self.nodes.get(i as usize)
    }

    fn hash(&self, ty: &EntityType, id: &str) -> u64 {
        self.hasher.hash_one((ty, id))
    }

    fn find(&self, uid: &EntityUID) -> Option<u32> {
        let ty = uid.entity_type();
        let id: &str = uid.eid().as_ref();
        let hash = self.hash(ty, id);
        self.table
            .find(hash, |&i| {
                self.node(i).is_some_and(|n| {
                    self.id_of(n) == id && self.types.get(n.ty as usize).is_some_and(|t| t == ty)
                })
            })
            .copied()
    }

    fn uid(&self, i: u32) -> Option<EntityUID> {
        let node = self.node(i)?;
        let ty = self.types.get(node.ty as usize)?.clone();
        Some(EntityUID::from_components(
            ty,
            Eid::new(self.id_of(node)),
            None,
        ))
    }

    fn corrupt(&self, i: u32) -> Corrupt {
        Corrupt(
            self.uid(i)
                .map_or_else(|| format!("#{i}"), |u| u.to_string()),
        )
    }

    /// The decoded entity `i` (from the cache when it is there); `None` when the UID
    /// is only named, not stored.
    fn entity(&self, i: u32) -> Result<Option<Arc<ast::Entity>>, Corrupt> {
        if let Some(hit) = self.cache.get(&i) {
            return Ok(Some(hit));
        }
        let Some(data) = self.data_of(i) else {
            return Ok(None);
        };
        let entity = Arc::new(self.decode(i, data).ok_or_else(|| self.corrupt(i))?);
        self.cache.insert(i, Arc::clone(&entity));
        Ok(Some(entity))
    }

    fn decode(&self, i: u32, data: &[u8]) -> Option<ast::Entity> {
        let mut r = Reader(data);
        let parents_n = r.len()?;
        let total = r.len()?;
        let mut parents = HashSet::with_capacity(parents_n);
        let mut indirect = HashSet::with_capacity(total.saturating_sub(parents_n));
        for k in 0..total {
            let uid = self.uid(r.index()?)?;
            if k < parents_n {
                parents.insert(uid);
            } else {
                indirect.insert(uid);
            }
        }
        let refs = r.len()?;
        for _ in 0..refs {
            r.index()?;
        }
        let attrs = self.decode_pairs(&mut r)?;
        let tags = self.decode_pairs(&mut r)?;
        Some(ast::Entity::new_with_attr_partial_value(
            self.uid(i)?,
            attrs.into_iter().map(|(k, v)| (k, PartialValue::Value(v))),
            indirect,
            parents,
            tags.into_iter().map(|(k, v)| (k, PartialValue::Value(v))),
        ))
    }

    fn decode_pairs(&self, r: &mut Reader<'_>) -> Option<Vec<(SmolStr, Value)>> {
        let n = r.len()?;
        let mut pairs = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            let name = self.names.get(r.len()?)?.clone();
            pairs.push((name, self.decode_value(r)?));
        }
        Some(pairs)
    }

    fn decode_value(&self, r: &mut Reader<'_>) -> Option<Value> {
        let value = match r.byte()? {
            T_FALSE => Value::from(false),
            T_TRUE => Value::from(true),
            T_LONG => {
                let z = r.uint()?;
                // Zigzag: small magnitudes of either sign stay short.
                #[allow(clippy::cast_possible_wrap)]
                let n = ((z >> 1) as i64) ^ -((z & 1) as i64);
                Value::from(n)
            }
            T_STR => {
                let n = r.len()?;
                let text = std::str::from_utf8(r.bytes(n)?).ok()?;
                Value::from(SmolStr::new(text))
            }
            T_UID => Value::from(self.uid(r.index()?)?),
            T_SET => {
                let n = r.len()?;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.decode_value(r)?);
                }
                Value::set(items, None)
            }
            T_RECORD => Value::record(self.decode_pairs(r)?, None),
            T_EXT => self.exts.get(r.len()?)?.clone(),
            _ => return None,
        };
        Some(value)
    }
}

/// Why a slice with a request's own entities could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SliceError {
    #[error("entity `{0}` is already in the entity store")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
}

fn collect_uids(value: &Value, out: &mut Vec<EntityUid>) {
    match &value.value {
        ValueKind::Lit(Literal::EntityUID(uid)) => out.push(EntityUid::from(EntityUID::clone(uid))),
        ValueKind::Set(set) => set.authoritative.iter().for_each(|v| collect_uids(v, out)),
        ValueKind::Record(record) => record.values().for_each(|v| collect_uids(v, out)),
        ValueKind::Lit(_) | ValueKind::ExtensionValue(_) => {}
    }
}

/// Skips the ancestors and pushes the referenced entities of an encoded entity.
fn refs_of(data: &[u8], out: &mut Vec<u32>) -> Option<()> {
    let mut r = Reader(data);
    let _parents = r.len()?;
    let total = r.len()?;
    for _ in 0..total {
        r.index()?;
    }
    let refs = r.len()?;
    for _ in 0..refs {
        out.push(r.index()?);
    }
    Some(())
}

fn is_action_json(value: &serde_json::Value) -> bool {
    value
        .get("uid")
        .and_then(|uid| crate::request::parse_uid(uid).ok())
        .is_some_and(|uid| uid.type_name().basename() == "Action")
}

/// The action entities: the data's, checked against the schema's declarations, plus
/// the schema's own, exactly as a whole-file parse makes them.
fn action_entities(
    data: Vec<serde_json::Value>,
    schema: Option<&Schema>,
    validation: Validation,
    findings: &mut Vec<String>,
    path: &std::path::Path,
) -> Result<Entities, String> {
    let json = serde_json::Value::Array(data);
    let Some(schema) = schema else {
        return Entities::from_json_value(json, None).map_err(|e| one_line(&e));
    };
    match Entities::from_json_value(json.clone(), Some(schema)) {
        Ok(entities) => Ok(entities),
        Err(err) if validation == Validation::Warn => {
            findings.push(format!("{}: {}", path.display(), one_line(&err)));
            let plain = Entities::from_json_value(json, None).map_err(|e| one_line(&e))?;
            let declared = schema.action_entities().map_err(|e| one_line(&e))?;
            // Action entities the data already defines win over the schema's copy.
            let missing: Vec<_> = declared
                .iter()
                .filter(|a| plain.get(&a.uid()).is_none())
                .cloned()
                .collect();
            plain.add_entities(missing, None).map_err(|e| one_line(&e))
        }
        Err(err) => Err(one_line(&err)),
    }
}

/// Calls a function on each element of a JSON array, one at a time.
struct Each<F>(F);

impl<'de, F: FnMut(serde_json::Value)> Visitor<'de> for Each<F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of entities")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<serde_json::Value>()? {
            (self.0)(value);
        }
        Ok(())
    }
}

/// Collects entities and the UIDs they name, then computes every ancestor set.
struct Builder {
    store: EntityStore,
    type_index: HashMap<EntityType, u32>,
    name_index: HashMap<SmolStr, u32>,
    /// Per node (stored nodes only): what `finish` needs, in the two arenas below.
    pending: Vec<Option<Pending>>,
    indices: Vec<u32>,
    bodies: Vec<u8>,
    /// Reused for each entity's references and values.
    refs: Vec<u32>,
    body: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Pending {
    /// Every ancestor the entity names (sorted): the input of the closure.
    named: Span,
    /// Its direct parents, which Cedar keeps apart from the indirect ancestors.
    parents: Span,
    refs: Span,
    /// Attributes and tags, encoded.
    body: Span,
}

impl Builder {
    fn new(cache: usize) -> Self {
        Self {
            store: EntityStore {
                types: Vec::new(),
                names: Vec::new(),
                exts: Vec::new(),
                nodes: Vec::new(),
                ids: String::new(),
                data: Vec::new(),
                table: HashTable::new(),
                hasher: RandomState::new(),
                stored: 0,
                cache: quick_cache::sync::Cache::new(cache),
                slices: quick_cache::sync::Cache::new((cache / 4).max(1)),
                actions: Entities::empty(),
                findings: Vec::new(),
            },
            type_index: HashMap::new(),
            name_index: HashMap::new(),
            pending: Vec::new(),
            indices: Vec::new(),
            bodies: Vec::new(),
            refs: Vec::new(),
            body: Vec::new(),
        }
    }

    fn intern_uid(&mut self, uid: &EntityUID) -> Result<u32, String> {
        if let Some(i) = self.store.find(uid) {
            return Ok(i);
        }
        let ty = uid.entity_type();
        let ty_index = match self.type_index.get(ty) {
            Some(&t) => t,
            None => {
                let t = u32::try_from(self.store.types.len())
                    .map_err(|_| "too many entity types".to_owned())?;
                self.store.types.push(ty.clone());
                self.type_index.insert(ty.clone(), t);
                t
            }
        };
        let index = u32::try_from(self.store.nodes.len())
            .ok()
            .filter(|&i| i < u32::MAX)
            .ok_or_else(|| "too many entities".to_owned())?;
        let id: &str = uid.eid().as_ref();
        let hash = self.store.hash(ty, id);
        let start = self.store.ids.len();
        self.store.ids.push_str(id);
        let id_span = Span::of(self.store.ids.as_bytes(), start)?;
        self.store.nodes.push(Node {
            ty: ty_index,
            id: id_span,
            data: Span::NONE,
        });
        self.pending.push(None);
        let EntityStore {
            table,
            nodes,
            types,
            ids,
            hasher,
            ..
        } = &mut self.store;
        table.insert_unique(hash, index, |&i| {
            nodes
                .get(i as usize)
                .and_then(|n| {
                    let t = types.get(n.ty as usize)?;
                    Some(hasher.hash_one((t, n.id.text(ids)?)))
                })
                .unwrap_or(0)
        });
        Ok(index)
    }

    fn intern_name(&mut self, name: &SmolStr) -> Result<u32, String> {
        if let Some(&i) = self.name_index.get(name) {
            return Ok(i);
        }
        let i = u32::try_from(self.store.names.len())
            .map_err(|_| "too many attribute names".to_owned())?;
        self.store.names.push(name.clone());
        self.name_index.insert(name.clone(), i);
        Ok(i)
    }

    fn push_indices(&mut self, items: &[u32]) -> Result<Span, String> {
        let start = self.indices.len();
        self.indices.extend_from_slice(items);
        Span::of(&self.indices, start)
    }

    fn add(&mut self, entity: &ast::Entity) -> Result<(), String> {
        let index = self.intern_uid(entity.uid())?;
        let mut parents = Vec::new();
        for parent in entity.parents() {
            parents.push(self.intern_uid(parent)?);
        }
        parents.sort_unstable();
        parents.dedup();
        let mut named = parents.clone();
        for ancestor in entity.indirect_ancestors() {
            named.push(self.intern_uid(ancestor)?);
        }
        named.sort_unstable();
        named.dedup();
        let mut refs = std::mem::take(&mut self.refs);
        let mut body = std::mem::take(&mut self.body);
        refs.clear();
        body.clear();
        let what = || format!("`{}`", entity.uid());
        let encoded = self
            .encode_pairs(entity.attrs(), &mut body, &mut refs, &what)
            .and_then(|()| self.encode_pairs(entity.tags(), &mut body, &mut refs, &what));
        let result = encoded.and_then(|()| {
            refs.sort_unstable();
            refs.dedup();
            self.record(index, entity, &named, &parents, &refs, &body)
        });
        self.refs = refs;
        self.body = body;
        result
    }

    fn record(
        &mut self,
        index: u32,
        entity: &ast::Entity,
        named: &[u32],
        parents: &[u32],
        refs: &[u32],
        body: &[u8],
    ) -> Result<(), String> {
        if let Some(Some(existing)) = self.pending.get(index as usize).copied() {
            // As Cedar: the same entity twice is one entity; two different ones are an error.
            let same_ancestors = existing.named.get(&self.indices) == Some(named);
            let existing_body = existing.body.get(&self.bodies).unwrap_or_default();
            if same_ancestors && self.check_round_trip(entity, existing_body).is_ok() {
                return Ok(());
            }
            return Err(format!(
                "entity `{}` is defined twice, differently",
                entity.uid()
            ));
        }
        // Prove the encoding on the spot: the store never decodes what it cannot.
        self.check_round_trip(entity, body)?;
        let named = self.push_indices(named)?;
        let parents = self.push_indices(parents)?;
        let refs = self.push_indices(refs)?;
        let start = self.bodies.len();
        self.bodies.extend_from_slice(body);
        let body = Span::of(&self.bodies, start)?;
        if let Some(slot) = self.pending.get_mut(index as usize) {
            *slot = Some(Pending {
                named,
                parents,
                refs,
                body,
            });
        }
        self.store.stored += 1;
        Ok(())
    }

    fn encode_pairs<'e>(
        &mut self,
        pairs: impl Iterator<Item = (&'e SmolStr, &'e PartialValue)>,
        out: &mut Vec<u8>,
        refs: &mut Vec<u32>,
        what: &dyn Fn() -> String,
    ) -> Result<(), String> {
        let pairs: Vec<_> = pairs.collect();
        put_len(out, pairs.len());
        for (name, value) in pairs {
            let PartialValue::Value(value) = value else {
                return Err(format!("{}: `{name}` is not a value", what()));
            };
            put_uint(out, u64::from(self.intern_name(name)?));
            self.encode_value(value, out, refs)?;
        }
        Ok(())
    }

    fn encode_value(
        &mut self,
        value: &Value,
        out: &mut Vec<u8>,
        refs: &mut Vec<u32>,
    ) -> Result<(), String> {
        match &value.value {
            ValueKind::Lit(Literal::Bool(false)) => out.push(T_FALSE),
            ValueKind::Lit(Literal::Bool(true)) => out.push(T_TRUE),
            ValueKind::Lit(Literal::Long(n)) => {
                out.push(T_LONG);
                // Zigzag, so small negative numbers stay short too.
                #[allow(clippy::cast_sign_loss)]
                put_uint(out, ((n << 1) ^ (n >> 63)) as u64);
            }
            ValueKind::Lit(Literal::String(s)) => {
                out.push(T_STR);
                put_len(out, s.len());
                out.extend_from_slice(s.as_bytes());
            }
            ValueKind::Lit(Literal::EntityUID(uid)) => {
                let i = self.intern_uid(uid)?;
                refs.push(i);
                out.push(T_UID);
                put_uint(out, u64::from(i));
            }
            ValueKind::Set(set) => {
                out.push(T_SET);
                put_len(out, set.authoritative.len());
                for item in set.authoritative.iter() {
                    self.encode_value(item, out, refs)?;
                }
            }
            ValueKind::Record(record) => {
                out.push(T_RECORD);
                put_len(out, record.len());
                for (name, item) in record.iter() {
                    put_uint(out, u64::from(self.intern_name(name)?));
                    self.encode_value(item, out, refs)?;
                }
            }
            ValueKind::ExtensionValue(_) => {
                out.push(T_EXT);
                put_len(out, self.store.exts.len());
                self.store.exts.push(value.clone());
            }
        }
        Ok(())
    }

    fn check_round_trip(&self, entity: &ast::Entity, body: &[u8]) -> Result<(), String> {
        let mut r = Reader(body);
        let same = |decoded: Option<Vec<(SmolStr, Value)>>,
                    original: Vec<(&SmolStr, &PartialValue)>| {
            decoded.is_some_and(|d| {
                d.len() == original.len()
                    && d.iter().zip(&original).all(|((k, v), (ok, ov))| {
                        k == *ok && matches!(ov, PartialValue::Value(o) if o == v)
                    })
            })
        };
        let attrs = self.store.decode_pairs(&mut r);
        let tags = self.store.decode_pairs(&mut r);
        if same(attrs, entity.attrs().collect())
            && same(tags, entity.tags().collect())
            && r.0.is_empty()
        {
            Ok(())
        } else {
            Err(format!(
                "entity `{}` does not survive encoding",
                entity.uid()
            ))
        }
    }

    /// Computes each stored entity's ancestors over the whole store and encodes it:
    /// the number of parents, the number of ancestors, the parents then the other
    /// ancestors, the number of referenced entities and them, then the attributes
    /// and the tags (each a count, then name and value pairs). Numbers are LEB128.
    fn finish(mut self) -> Result<EntityStore, String> {
        let n = self.store.nodes.len();
        let mut closure: Vec<Span> = vec![Span::NONE; n];
        let mut arena: Vec<u32> = Vec::new();
        let mut on_path = vec![false; n];
        for start in 0..n {
            self.close(start, &mut closure, &mut arena, &mut on_path)?;
        }
        drop(on_path);
        let mut data: Vec<u8> = Vec::with_capacity(self.bodies.len() * 5 / 4);
        for (i, pending) in self.pending.iter().enumerate() {
            let Some(p) = pending else { continue };
            let parents = p.parents.get(&self.indices).unwrap_or_default();
            let ancestors = closure
                .get(i)
                .and_then(|c| c.get(&arena))
                .unwrap_or_default();
            let start = data.len();
            put_len(&mut data, parents.len());
            put_len(&mut data, ancestors.len());
            for &a in parents {
                put_uint(&mut data, u64::from(a));
            }
            for &a in ancestors
                .iter()
                .filter(|a| parents.binary_search(a).is_err())
            {
                put_uint(&mut data, u64::from(a));
            }
            let refs = p.refs.get(&self.indices).unwrap_or_default();
            put_len(&mut data, refs.len());
            for &r in refs {
                put_uint(&mut data, u64::from(r));
            }
            data.extend_from_slice(p.body.get(&self.bodies).unwrap_or_default());
            let span = Span::of(&data, start)?;
            if let Some(node) = self.store.nodes.get_mut(i) {
                node.data = span;
            }
        }
        data.shrink_to_fit();
        self.store.data = data;
        self.store.ids.shrink_to_fit();
        self.store.nodes.shrink_to_fit();
        Ok(self.store)
    }

    /// The ancestors of `start`, sorted, computed depth first without recursion: a
    /// hierarchy from a file may be as deep as it is long.
    fn close(
        &self,
        start: usize,
        closure: &mut [Span],
        arena: &mut Vec<u32>,
        on_path: &mut [bool],
    ) -> Result<(), String> {
        let done = |closure: &[Span], i: usize| closure.get(i).is_some_and(|c| c.is_some());
        if done(closure, start) {
            return Ok(());
        }
        let parents_of = |i: usize| -> &[u32] {
            self.pending
                .get(i)
                .and_then(|p| p.as_ref())
                .and_then(|p| p.named.get(&self.indices))
                .unwrap_or_default()
        };
        // (node, next parent to visit)
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        if let Some(flag) = on_path.get_mut(start) {
            *flag = true;
        }
        let mut all: Vec<u32> = Vec::new();
        while let Some(&(node, next)) = stack.last() {
            let parents = parents_of(node);
            if let Some(&parent) = parents.get(next) {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                let p = parent as usize;
                if on_path.get(p).copied().unwrap_or(false) {
                    let name = self
                        .store
                        .uid(parent)
                        .map_or_else(|| format!("#{p}"), |u| u.to_string());
                    return Err(format!(
                        "entity `{name}` is among its own ancestors (the hierarchy has a cycle)"
                    ));
                }
                if !done(closure, p) {
                    if let Some(flag) = on_path.get_mut(p) {
                        *flag = true;
                    }
                    stack.push((p, 0));
                }
                continue;
            }
            all.clear();
            for &parent in parents {
                all.push(parent);
                if let Some(up) = closure.get(parent as usize).and_then(|c| c.get(arena)) {
                    all.extend_from_slice(up);
                }
            }
            all.sort_unstable();
            all.dedup();
            let at = arena.len();
            arena.extend_from_slice(&all);
            if let Some(slot) = closure.get_mut(node) {
                *slot = Span::of(arena, at)?;
            }
            if let Some(flag) = on_path.get_mut(node) {
                *flag = false;
            }
            stack.pop();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
