//! The decision request: UIDs in both JSON forms, context parsed with the schema,
//! and the entities the request can reach, sliced out of the entity store.
//!
//! The slice holds the principal, action and resource, the entities the context and
//! the policies name, and whatever their attributes and tags name, transitively (see
//! [`crate::entities`]); a body's own entities are merged into it.

use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    Context, Entities, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression, Schema,
};
use serde::Deserialize;

use crate::config::Validation;
use crate::entities::{EntityStore, SliceError};
use crate::policy::{Bundle, one_line};

/// Why a decision request cannot be decided: a client mistake (a 4xx), except
/// [`RequestError::Store`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    #[error("request body is not valid JSON: {0}")]
    Json(String),
    #[error("`{field}`: {message}")]
    Uid {
        field: &'static str,
        message: String,
    },
    #[error("`context`: {0}")]
    Context(String),
    #[error("`entities`: {0}")]
    Entities(String),
    #[error(
        "`entities`: entity `{0}` is already in the entity store; a request may add entities, not replace them"
    )]
    EntityConflict(String),
    #[error("request does not conform to the schema: {0}")]
    Schema(String),
    /// Not the client's mistake: the server's entity store failed (a 500).
    #[error("{0}")]
    Store(String),
}

impl RequestError {
    /// Unparseable input is a 400; well-formed input the schema rejects is a 422.
    pub fn is_unprocessable(&self) -> bool {
        matches!(
            self,
            Self::Schema(_) | Self::Context(_) | Self::Entities(_) | Self::EntityConflict(_)
        )
    }

    /// The server failed, not the request.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Store(_))
    }
}

/// The JSON body of `POST /v1/is_authorized` (field names as in cedar-agent).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Body {
    pub principal: serde_json::Value,
    pub action: serde_json::Value,
    pub resource: serde_json::Value,
    #[serde(default)]
    pub context: Option<serde_json::Value>,
    #[serde(default)]
    pub entities: Option<serde_json::Value>,
}

/// A request ready for the engine: Cedar's `Request` plus the entities to use.
#[derive(Debug)]
pub struct Query {
    pub principal: EntityUid,
    pub action: EntityUid,
    pub resource: EntityUid,
    pub request: Request,
    /// The entities evaluation can reach, with the body's own merged in; shared with
    /// the store's slice cache.
    pub entities: Arc<Entities>,
    /// Whether the body brought entities.
    pub merged: bool,
}

/// A UID in its string form, `User::"alice"`, as [`parse_uid`] reads a string.
///
/// # Errors
/// `text` is not a Cedar entity UID.
pub fn parse_uid_text(text: &str) -> Result<EntityUid, String> {
    if let Some(uid) = plain_uid(text) {
        return Ok(uid);
    }
    EntityUid::from_str(text).map_err(|e| {
        format!(
            "`{text}` is not an entity UID like `User::\"alice\"`: {}",
            one_line(&e)
        )
    })
}

/// Distinct type names each thread keeps parsed; past this, new ones are parsed anew.
const TYPE_CACHE: usize = 256;

thread_local! {
    static TYPES: std::cell::RefCell<std::collections::HashMap<Box<str>, Option<EntityTypeName>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// `Type::"id"` in its plainest form, without Cedar's parser, which costs more than
/// the rest of a grant's parse: the type name made only of identifier characters and
/// `::`, parsed by Cedar once per thread and kept, and the id with no quote, backslash
/// or control character, so that it means itself. Anything else (whitespace,
/// escapes, comments, an unusual type) is `None`, for Cedar's parser to decide.
fn plain_uid(text: &str) -> Option<EntityUid> {
    let (ty, id) = text.strip_suffix('"')?.split_once("::\"")?;
    if ty.is_empty()
        || !ty
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
        || id.chars().any(|c| c == '"' || c == '\\' || c.is_control())
    {
        return None;
    }
    let ty = TYPES.with(|types| {
        let mut types = types.borrow_mut();
        if let Some(known) = types.get(ty) {
            return known.clone();
        }
        let parsed = EntityTypeName::from_str(ty).ok();
        if types.len() < TYPE_CACHE {
            types.insert(ty.into(), parsed.clone());
        }
        parsed
    })?;
    Some(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
}

/// Parses a UID given as `Type::"id"`, `{"type": .., "id": ..}` or `{"__entity": {..}}`.
///
/// # Errors
/// Any other shape, or a type name that is not a Cedar name.
pub fn parse_uid(value: &serde_json::Value) -> Result<EntityUid, String> {
    match value {
        serde_json::Value::String(text) => parse_uid_text(text),
        serde_json::Value::Object(map) => {
            if let Some(inner) = map.get("__entity")
                && map.len() == 1
            {
                return parse_uid(inner);
            }
            let (Some(ty), Some(id), 2) = (
                map.get("type").and_then(|v| v.as_str()),
                map.get("id").and_then(|v| v.as_str()),
                map.len(),
            ) else {
                return Err("expected `{\"type\": \"...\", \"id\": \"...\"}`".into());
            };
            let ty = EntityTypeName::from_str(ty)
                .map_err(|e| format!("`{ty}` is not an entity type name: {}", one_line(&e)))?;
            Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
        }
        _ => {
            Err("expected a string like `User::\"alice\"` or an object with `type` and `id`".into())
        }
    }
}

/// Builds a [`Query`] from a body against one bundle and entity store.
///
/// # Errors
/// Malformed UIDs, context or entities, or a request the schema rejects.
pub fn build_query(
    body: Body,
    bundle: &Bundle,
    store: &EntityStore,
    validation: Validation,
) -> Result<Query, RequestError> {
    let uid = |field: &'static str, v: &serde_json::Value| {
        parse_uid(v).map_err(|message| RequestError::Uid { field, message })
    };
    let principal = uid("principal", &body.principal)?;
    let action = uid("action", &body.action)?;
    let resource = uid("resource", &body.resource)?;
    let schema = bundle.schema.as_ref();

    let has_body_entities = match &body.entities {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    };
    // The entities the context names seed the entity slice; collect them before Cedar
    // consumes the context, so the context is moved, never copied.
    let mut context_uids = Vec::new();
    if let Some(ctx) = &body.context {
        collect_json_uids(ctx, &mut context_uids);
    }
    let new_request = |context| {
        Request::new(
            principal.clone(),
            action.clone(),
            resource.clone(),
            context,
            schema,
        )
        .map_err(|e| RequestError::Schema(one_line(&e)))
    };
    // Most contexts are flat records of booleans, integers and strings. Built directly
    // they cost a fraction of Cedar's JSON parser, and `Request::new` still checks them
    // against the schema. If that check fails, the value may need a conversion only
    // the parser does (a string the schema types as `ipaddr`, say), or is wrong: the
    // parser decides, exactly as without this path.
    let fast = body
        .context
        .as_ref()
        .and_then(flat_context)
        .and_then(|context| new_request(context).ok());
    let request = match (fast, body.context) {
        (Some(request), _) => request,
        (None, None | Some(serde_json::Value::Null)) => new_request(Context::empty())?,
        (None, Some(value)) => {
            let context = Context::from_json_value(value, schema.map(|s| (s, &action)))
                .map_err(|e| RequestError::Context(one_line(&e)))?;
            new_request(context)?
        }
    };

    let roots = [&principal, &action, &resource]
        .into_iter()
        .chain(&context_uids)
        .chain(&bundle.entity_literals);
    let entities = match body.entities {
        Some(value) if has_body_entities => {
            let extra = body_entities(value, schema, validation)?;
            let merged = store.slice_with(roots, extra).map_err(|e| match e {
                SliceError::Conflict(uid) => RequestError::EntityConflict(uid),
                SliceError::Invalid(message) => RequestError::Entities(message),
                SliceError::Corrupt(c) => RequestError::Store(c.to_string()),
            })?;
            Arc::new(merged)
        }
        _ => store
            .slice(roots)
            .map_err(|e| RequestError::Store(e.to_string()))?,
    };
    Ok(Query {
        principal,
        action,
        resource,
        request,
        entities,
        merged: has_body_entities,
    })
}

/// A JSON object of booleans, `i64` integers and strings as a Cedar context, or `None`
/// for anything else (nested values, other numbers, extension or entity forms).
fn flat_context(value: &serde_json::Value) -> Option<Context> {
    let object = value.as_object()?;
    let mut pairs = Vec::with_capacity(object.len());
    for (key, v) in object {
        let expr = match v {
            serde_json::Value::Bool(b) => RestrictedExpression::new_bool(*b),
            serde_json::Value::Number(n) => RestrictedExpression::new_long(n.as_i64()?),
            serde_json::Value::String(text) => RestrictedExpression::new_string(text.clone()),
            _ => return None,
        };
        pairs.push((key.clone(), expr));
    }
    Context::from_pairs(pairs).ok()
}

/// A body's `entities`, parsed with the schema (without it in warn mode, when the
/// schema rejects them). Action entities the schema declares are dropped: the store
/// holds the schema's copies, the ones the policy slices were cut with.
fn body_entities(
    value: serde_json::Value,
    schema: Option<&Schema>,
    validation: Validation,
) -> Result<Vec<cedar_policy::Entity>, RequestError> {
    // Only warn mode may parse a second time, so only it keeps a copy for that.
    let fallback = (validation == Validation::Warn && schema.is_some()).then(|| value.clone());
    let parsed = match (Entities::from_json_value(value, schema), fallback) {
        (Ok(parsed), _) => parsed,
        (Err(err), Some(value)) => {
            tracing::debug!(error = %one_line(&err), "request entities do not conform to the schema");
            Entities::from_json_value(value, None)
                .map_err(|e| RequestError::Entities(one_line(&e)))?
        }
        (Err(err), None) => return Err(RequestError::Entities(one_line(&err))),
    };
    let is_action = |uid: &EntityUid| schema.is_some_and(|s| s.actions().any(|a| a == uid));
    Ok(parsed
        .into_iter()
        .filter(|entity| !is_action(&entity.uid()))
        .collect())
}

/// Every JSON object that could denote an entity, conservatively: a superset costs
/// nothing but a lookup, a miss would change a decision.
fn collect_json_uids(value: &serde_json::Value, out: &mut Vec<EntityUid>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Ok(uid) = parse_uid(value) {
                out.push(uid);
            }
            map.values().for_each(|v| collect_json_uids(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_json_uids(v, out)),
        serde_json::Value::String(text) if text.contains("::") => {
            if let Ok(uid) = EntityUid::from_str(text) {
                out.push(uid);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
