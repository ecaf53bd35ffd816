//! The principal of a gateway request: the value of the header the gateway sets
//! after authenticating the caller, either a whole UID (`ApiKey::"bb-ws1"`) or a bare
//! id that gets the configured default type (`alice` → `User::"alice"`).
//!
//! elevate does not authenticate anyone here: the header is trusted because only
//! the gateway can reach elevate, and the gateway overwrites (or removes) whatever
//! a client sent under that name.

use std::str::FromStr;

use cedar_policy::{EntityId, EntityTypeName, EntityUid};
use hyper::HeaderMap;
use hyper::header::HeaderName;

/// Why no principal could be established: the answer is 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalError {
    #[error("no principal: the gateway sets `{0}` once it has authenticated the caller")]
    Missing(String),
    #[error("`{0}` is sent more than once")]
    Repeated(String),
    #[error("`{0}` is not visible text")]
    NotText(String),
    #[error("`{header}` `{value}` is neither an entity UID like `User::\"alice\"` nor a bare id")]
    Invalid { header: String, value: String },
}

/// Reads the principal from `header`; a value without `::` is an id of `default_type`.
///
/// # Errors
/// The header is absent, empty, repeated, not text, or not a UID.
pub fn parse_principal(
    headers: &HeaderMap,
    header: &HeaderName,
    default_type: &EntityTypeName,
) -> Result<EntityUid, PrincipalError> {
    let mut values = headers.get_all(header).iter();
    let value = values
        .next()
        .ok_or_else(|| PrincipalError::Missing(header.to_string()))?;
    if values.next().is_some() {
        return Err(PrincipalError::Repeated(header.to_string()));
    }
    let text = value
        .to_str()
        .map_err(|_| PrincipalError::NotText(header.to_string()))?
        .trim();
    if text.is_empty() {
        return Err(PrincipalError::Missing(header.to_string()));
    }
    uid_or_bare_id(text, default_type).ok_or_else(|| PrincipalError::Invalid {
        header: header.to_string(),
        value: text.to_owned(),
    })
}

/// `text` as a whole UID when it has `::`, else as an id of `default_type`; `None`
/// for text with `::` that is no UID. Shared by the header and the bearer JWT, so a
/// claim value means what the same header value would.
pub fn uid_or_bare_id(text: &str, default_type: &EntityTypeName) -> Option<EntityUid> {
    if text.contains("::") {
        EntityUid::from_str(text).ok()
    } else {
        Some(EntityUid::from_type_name_and_id(
            default_type.clone(),
            EntityId::new(text),
        ))
    }
}
