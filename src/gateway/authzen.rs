//! OpenID AuthZEN Authorization API 1.0, evaluation requests: the `subject` /
//! `action` / `resource` / `context` 4-tuple mapped onto a decision body, and the
//! batch form with top-level defaults, an `evaluations` array and
//! `options.evaluations_semantic`.
//!
//! Mapping: `subject {type, id}` is the principal `type::"id"`, `resource {type, id}`
//! the resource, `action.name` the action `Action::"name"` (or a whole action UID,
//! for namespaced schemas), `context` the Cedar context, parsed with the schema as
//! on `/v1/is_authorized`. Types are Cedar entity type names as the schema spells
//! them (`User`, not `user`). `properties` are accepted and not used: elevate
//! decides on its own entity store, which a caller must not be able to amend.

use std::str::FromStr;

use cedar_policy::{EntityTypeName, EntityUid};
use serde_json::{Map, Value, json};

use crate::request::Body;

/// How a batch is run (`options.evaluations_semantic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantic {
    /// Every evaluation, every answer, in order (the default).
    ExecuteAll,
    /// Stop after the first `false` (an evaluation that fails counts as `false`).
    DenyOnFirstDeny,
    /// Stop after the first `true`.
    PermitOnFirstPermit,
}

impl Semantic {
    /// Whether a batch stops after an answer of `decision`.
    pub fn stops_after(self, decision: bool) -> bool {
        match self {
            Self::ExecuteAll => false,
            Self::DenyOnFirstDeny => !decision,
            Self::PermitOnFirstPermit => decision,
        }
    }
}

/// A parsed `/access/v1/evaluations` request.
#[derive(Debug)]
pub enum Evaluations {
    /// No `evaluations` array: a single evaluation, answered as one.
    Single(Box<Body>),
    /// Each item with the defaults applied; an item that is malformed is an error
    /// for that item only, answered `false` with the error in its context.
    Batch {
        items: Vec<Result<Body, String>>,
        semantic: Semantic,
    },
}

const TUPLE: [&str; 4] = ["subject", "action", "resource", "context"];

/// Parses a single evaluation request (`/access/v1/evaluation`).
///
/// # Errors
/// Not an object, or a member missing or of the wrong shape; the message names it.
pub fn parse_evaluation(value: &Value) -> Result<Body, String> {
    let object = value
        .as_object()
        .ok_or("the request must be a JSON object with `subject`, `action` and `resource`")?;
    evaluation_body(object)
}

/// Parses an evaluations request (`/access/v1/evaluations`).
///
/// # Errors
/// Not an object, `evaluations` not an array, `options` not an object or an
/// unknown `evaluations_semantic`, or (without `evaluations`) a malformed 4-tuple.
pub fn parse_evaluations(value: &Value) -> Result<Evaluations, String> {
    let object = value
        .as_object()
        .ok_or("the request must be a JSON object with `evaluations` or a 4-tuple")?;
    let semantic = match object.get("options") {
        None | Some(Value::Null) => Semantic::ExecuteAll,
        Some(Value::Object(options)) => match options.get("evaluations_semantic") {
            None | Some(Value::Null) => Semantic::ExecuteAll,
            Some(Value::String(s)) if s == "execute_all" => Semantic::ExecuteAll,
            Some(Value::String(s)) if s == "deny_on_first_deny" => Semantic::DenyOnFirstDeny,
            Some(Value::String(s)) if s == "permit_on_first_permit" => {
                Semantic::PermitOnFirstPermit
            }
            Some(other) => {
                return Err(format!(
                    "`options.evaluations_semantic` {other} is not `execute_all`, \
                     `deny_on_first_deny` or `permit_on_first_permit`"
                ));
            }
        },
        Some(_) => return Err("`options` must be an object".into()),
    };
    let items = match object.get("evaluations") {
        None | Some(Value::Null) => {
            return evaluation_body(object).map(|b| Evaluations::Single(Box::new(b)));
        }
        Some(Value::Array(items)) => items,
        Some(_) => return Err("`evaluations` must be an array of evaluation objects".into()),
    };
    let items = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let item = item
                .as_object()
                .ok_or_else(|| format!("`evaluations[{index}]` must be an object"))?;
            // A member of the item replaces the default as a whole: defaults are not
            // merged into it field by field.
            let mut merged = Map::new();
            for key in TUPLE {
                if let Some(v) = item
                    .get(key)
                    .filter(|v| !v.is_null())
                    .or_else(|| object.get(key).filter(|v| !v.is_null()))
                {
                    merged.insert(key.to_owned(), v.clone());
                }
            }
            evaluation_body(&merged).map_err(|e| format!("`evaluations[{index}]`: {e}"))
        })
        .collect();
    Ok(Evaluations::Batch { items, semantic })
}

fn evaluation_body(object: &Map<String, Value>) -> Result<Body, String> {
    let principal = entity(object, "subject")?;
    let resource = entity(object, "resource")?;
    let action = action(object)?;
    let context = match object.get("context") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(Value::Object(map.clone())),
        Some(_) => return Err("`context` must be an object".into()),
    };
    Ok(Body {
        principal,
        action,
        resource,
        context,
        entities: None,
    })
}

/// `{"type", "id", "properties"?}` as a UID in `{"type", "id"}` form.
fn entity(object: &Map<String, Value>, field: &str) -> Result<Value, String> {
    let value = object
        .get(field)
        .ok_or_else(|| format!("`{field}` is missing"))?;
    let map = value
        .as_object()
        .ok_or_else(|| format!("`{field}` must be an object with `type` and `id`"))?;
    let ty = map
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{field}.type` must be a string"))?;
    let id = map
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{field}.id` must be a string"))?;
    if let Some(properties) = map.get("properties")
        && !properties.is_object()
        && !properties.is_null()
    {
        return Err(format!("`{field}.properties` must be an object"));
    }
    EntityTypeName::from_str(ty).map_err(|_| {
        format!("`{field}.type` `{ty}` is not a Cedar entity type name like `User`")
    })?;
    Ok(json!({"type": ty, "id": id}))
}

fn action(object: &Map<String, Value>) -> Result<Value, String> {
    let map = object
        .get("action")
        .ok_or("`action` is missing")?
        .as_object()
        .ok_or("`action` must be an object with `name`")?;
    let name = map
        .get("name")
        .and_then(Value::as_str)
        .ok_or("`action.name` must be a string")?;
    if name.contains("::") {
        let uid = EntityUid::from_str(name)
            .ok()
            .filter(|u| u.type_name().basename() == "Action")
            .ok_or_else(|| {
                format!("`action.name` `{name}` is neither an action name nor an action UID")
            })?;
        return Ok(crate::gateway::uid_json(&uid));
    }
    Ok(json!({"type": "Action", "id": name}))
}
