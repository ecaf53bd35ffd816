//! The workflow's routes: `/v1/elevations…`, `/v1/whoami` and `/v1/audit` for
//! callers with a bearer token, and `/v1/grants`, the feed sidecars long-poll.
//!
//! Commands run on a blocking thread (the event log fsyncs) and answer only once
//! their event is durable and the feed that follows from it is published.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cedar_policy::EntityUid;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH};
use hyper::{Method, Request, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{ApiError, App, json_response};
use crate::request::parse_uid;
use crate::tokens::Tokens;
use crate::workflow::service::{Published, Service};
use crate::workflow::{Elevation, ExtendSpec, Filter, RequestSpec, State, WorkflowError};

/// The longest `?wait=` a feed long-poll may ask for, in seconds.
pub const MAX_FEED_WAIT_SECS: u64 = 300;
/// Events per `/v1/audit` page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_AUDIT_LIMIT: usize = 1000;
pub const MAX_AUDIT_LIMIT: usize = 10_000;

/// The workflow as the HTTP API serves it.
pub struct WorkflowApi {
    pub service: Arc<Service>,
    pub tokens: Arc<Tokens>,
    /// Ends feed long-polls at shutdown instead of holding the drain.
    pub shutdown: CancellationToken,
}

/// Which workflow route a path names.
pub(super) enum Target {
    Collection,
    One(String),
    Command(String, String),
    WhoAmI,
    Audit,
    Grants,
}

impl Target {
    pub(super) fn parse(path: &str) -> Option<Self> {
        match path {
            "/v1/elevations" => return Some(Self::Collection),
            "/v1/whoami" => return Some(Self::WhoAmI),
            "/v1/audit" => return Some(Self::Audit),
            "/v1/grants" => return Some(Self::Grants),
            _ => {}
        }
        let rest = path.strip_prefix("/v1/elevations/")?;
        match rest.split_once('/') {
            None if !rest.is_empty() => Some(Self::One(rest.to_owned())),
            Some((id, command)) if !id.is_empty() && !command.contains('/') => {
                Some(Self::Command(id.to_owned(), command.to_owned()))
            }
            _ => None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    role: String,
    scope: Value,
    // Values the caller may get wrong in ways worth a sentence (a fractional number of
    // seconds, a date in the wrong form) are taken raw and checked into a 422.
    #[serde(default)]
    duration: Option<Value>,
    #[serde(default)]
    duration_seconds: Option<Value>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    ticket: Option<String>,
    #[serde(default)]
    on_behalf_of: Option<String>,
    #[serde(default)]
    not_before: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Comment {
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MoreTime {
    #[serde(default)]
    duration: Option<Value>,
    #[serde(default)]
    duration_seconds: Option<Value>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    ticket: Option<String>,
}

impl App {
    pub(super) async fn workflow_route(
        &self,
        target: Target,
        method: &Method,
        path: &str,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let Some(api) = &self.workflow else {
            return Err(ApiError::WorkflowDisabled {
                path: path.to_owned(),
            });
        };
        let wrong_method = |allowed| ApiError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_owned(),
            allowed,
        };
        let get = method == Method::GET || method == Method::HEAD;
        if let Target::Grants = target {
            if !get {
                return Err(wrong_method("GET"));
            }
            return feed(api, &req).await;
        }
        let actor = authenticate(&api.tokens, &req)?;
        let query = query_pairs(req.uri().query());
        match target {
            Target::WhoAmI if get => Ok(json_response(
                StatusCode::OK,
                &json!({ "principal": actor.to_string() }),
            )),
            Target::Audit if get => {
                let after = number(&query, "after")?.unwrap_or(0);
                let limit = number(&query, "limit")?.map_or(DEFAULT_AUDIT_LIMIT, |n| {
                    usize::try_from(n).unwrap_or(usize::MAX)
                });
                if limit == 0 || limit > MAX_AUDIT_LIMIT {
                    return Err(ApiError::Invalid(format!(
                        "`limit` must be between 1 and {MAX_AUDIT_LIMIT}"
                    )));
                }
                let page = read(&api.service, move |w, _| {
                    json!({
                        "events": w.events_after(after, limit),
                        "last_seq": w.last_seq(),
                    })
                })
                .await?;
                Ok(json_response(StatusCode::OK, &page))
            }
            Target::Collection if get => {
                let mut filter = Filter::default();
                for (key, value) in &query {
                    match key.as_str() {
                        "state" => {
                            filter.state = Some(State::from_str(value).map_err(ApiError::Invalid)?);
                        }
                        "principal" => {
                            filter.principal = Some(EntityUid::from_str(value).map_err(|e| {
                                ApiError::Invalid(format!(
                                    "`principal`: `{value}` is not an entity UID like `User::\"alice\"`: {e}"
                                ))
                            })?);
                        }
                        other => {
                            return Err(ApiError::Invalid(format!(
                                "unknown query parameter `{other}`; use `state` or `principal`"
                            )));
                        }
                    }
                }
                let list = read(&api.service, move |w, now| {
                    let items: Vec<Value> = w
                        .list(&filter, now)
                        .iter()
                        .map(|e| e.to_json(now))
                        .collect();
                    json!({ "elevations": items })
                })
                .await?;
                Ok(json_response(StatusCode::OK, &list))
            }
            Target::Collection if method == Method::POST => {
                let body: NewRequest = self.read_json(req).await?;
                let spec = RequestSpec {
                    role: body.role,
                    scope: parse_uid(&body.scope)
                        .map_err(|m| ApiError::Invalid(format!("`scope`: {m}")))?,
                    duration: duration(body.duration.as_ref(), body.duration_seconds.as_ref())?,
                    reason: required_reason(body.reason)?,
                    ticket: body.ticket,
                    on_behalf_of: body.on_behalf_of,
                    not_before: body.not_before.as_ref().map(instant).transpose()?,
                };
                let created = run(&api.service, move |w, now| w.request(&actor, spec, now)).await?;
                Ok(created_response(&created, api.service.now()))
            }
            Target::One(id) if get => {
                let wanted = id.clone();
                let found = read(&api.service, move |w, now| {
                    w.get(&wanted).map(|e| e.to_json(now))
                })
                .await?;
                match found {
                    Some(e) => Ok(json_response(StatusCode::OK, &e)),
                    None => Err(ApiError::Workflow(WorkflowError::NotFound { id })),
                }
            }
            Target::Command(id, command) if method == Method::POST => {
                if command == "extend" {
                    let body: MoreTime = self.read_json(req).await?;
                    let spec = ExtendSpec {
                        duration: duration(body.duration.as_ref(), body.duration_seconds.as_ref())?,
                        reason: required_reason(body.reason)?,
                        ticket: body.ticket,
                    };
                    let created =
                        run(&api.service, move |w, now| w.extend(&actor, &id, spec, now)).await?;
                    return Ok(created_response(&created, api.service.now()));
                }
                let bytes = self.read_body(req).await?;
                let Comment { comment } = if bytes.iter().all(u8::is_ascii_whitespace) {
                    Comment::default()
                } else {
                    super::parse_json(&bytes)?
                };
                let updated = match command.as_str() {
                    "approve" => {
                        run(&api.service, move |w, now| {
                            w.approve(&actor, &id, comment, now)
                        })
                        .await
                    }
                    "deny" => {
                        run(&api.service, move |w, now| {
                            w.deny(&actor, &id, comment, now)
                        })
                        .await
                    }
                    "cancel" => {
                        run(&api.service, move |w, now| {
                            w.cancel(&actor, &id, comment, now)
                        })
                        .await
                    }
                    "revoke" => {
                        run(&api.service, move |w, now| {
                            w.revoke(&actor, &id, comment, now)
                        })
                        .await
                    }
                    "relinquish" => {
                        run(&api.service, move |w, now| {
                            w.relinquish(&actor, &id, comment, now)
                        })
                        .await
                    }
                    _ => {
                        return Err(ApiError::NotFound {
                            method: method.to_string(),
                            path: path.to_owned(),
                        });
                    }
                }?;
                Ok(json_response(
                    StatusCode::OK,
                    &updated.to_json(api.service.now()),
                ))
            }
            Target::Collection => Err(wrong_method("GET, POST")),
            Target::Command(..) => Err(wrong_method("POST")),
            Target::One(_) | Target::WhoAmI | Target::Audit | Target::Grants => {
                Err(wrong_method("GET"))
            }
        }
    }

    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        req: Request<Incoming>,
    ) -> Result<T, ApiError> {
        let bytes = self.read_body(req).await?;
        super::parse_json(&bytes)
    }
}

/// Reads on a blocking thread: the lock may be held by a command's fsync, and an
/// async worker must not wait for that (decisions run on the same workers).
async fn read<T: Send + 'static>(
    service: &Arc<Service>,
    f: impl FnOnce(&crate::workflow::Workflow, Timestamp) -> T + Send + 'static,
) -> Result<T, ApiError> {
    let service = Arc::clone(service);
    tokio::task::spawn_blocking(move || service.read(f))
        .await
        .map_err(|e| ApiError::Internal(format!("the workflow's worker failed: {e}")))
}

/// Runs a command on a blocking thread: it fsyncs.
async fn run(
    service: &Arc<Service>,
    f: impl FnOnce(&mut crate::workflow::Workflow, Timestamp) -> Result<Elevation, WorkflowError>
    + Send
    + 'static,
) -> Result<Elevation, ApiError> {
    let service = Arc::clone(service);
    tokio::task::spawn_blocking(move || service.command(f))
        .await
        .map_err(|e| ApiError::Internal(format!("the workflow's worker failed: {e}")))?
        .map_err(ApiError::Workflow)
}

fn created_response(e: &Elevation, now: Timestamp) -> Response<Full<Bytes>> {
    let mut response = json_response(StatusCode::CREATED, &e.to_json(now));
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/elevations/{}", e.id)) {
        response
            .headers_mut()
            .insert(hyper::header::LOCATION, location);
    }
    response
}

fn authenticate(tokens: &Tokens, req: &Request<Incoming>) -> Result<EntityUid, ApiError> {
    let header = match req.headers().get(AUTHORIZATION) {
        None => None,
        Some(value) => Some(value.to_str().map_err(|_| {
            ApiError::Unauthenticated("the `Authorization` header is not visible ASCII".into())
        })?),
    };
    tokens
        .authenticate(header)
        .map_err(|e| ApiError::Unauthenticated(e.to_string()))
}

fn required_reason(reason: Option<String>) -> Result<String, ApiError> {
    reason.ok_or_else(|| ApiError::Invalid("missing `reason`: say why you need it".into()))
}

fn instant(value: &Value) -> Result<Timestamp, ApiError> {
    value
        .as_str()
        .and_then(|text| Timestamp::from_str(text).ok())
        .ok_or_else(|| {
            ApiError::Invalid(format!(
                "`not_before`: {value} is not an RFC 3339 instant like `2026-12-03T17:00:00Z`"
            ))
        })
}

/// The duration of a request body: `duration` as ISO 8601 or friendly text, or
/// `duration_seconds` as a whole number; exactly one of them.
fn duration(text: Option<&Value>, seconds: Option<&Value>) -> Result<SignedDuration, ApiError> {
    match (text, seconds) {
        (Some(value), None) => {
            let text = value.as_str().ok_or_else(|| {
                ApiError::Invalid(format!(
                    "`duration`: {value} is not text like `2h`, `90m` or `PT2H` (or use `duration_seconds`)"
                ))
            })?;
            SignedDuration::from_str(text.trim()).map_err(|e| {
                ApiError::Invalid(format!(
                    "`duration`: `{text}` is not a duration like `2h`, `90m` or `PT2H`: {e}"
                ))
            })
        }
        (None, Some(value)) => value
            .as_i64()
            .map(SignedDuration::from_secs)
            .ok_or_else(|| {
                ApiError::Invalid(format!(
                    "`duration_seconds`: {value} is not a whole number of seconds"
                ))
            }),
        (Some(_), Some(_)) => Err(ApiError::Invalid(
            "give `duration` or `duration_seconds`, not both".into(),
        )),
        (None, None) => Err(ApiError::Invalid(
            "missing `duration` (like `2h`) or `duration_seconds`".into(),
        )),
    }
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query.map_or_else(Vec::new, |q| {
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    })
}

fn number(query: &[(String, String)], name: &str) -> Result<Option<u64>, ApiError> {
    query
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| {
            v.parse::<u64>().map_err(|_| {
                ApiError::Invalid(format!(
                    "`{name}` must be a non-negative integer, not `{v}`"
                ))
            })
        })
        .transpose()
}

/// `GET /v1/grants`: the current document, or 304 for a matching `If-None-Match`,
/// held up to `?wait=` seconds for the next revision.
async fn feed(
    api: &WorkflowApi,
    req: &Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let query = query_pairs(req.uri().query());
    if let Some((other, _)) = query.iter().find(|(k, _)| k != "wait") {
        return Err(ApiError::Invalid(format!(
            "unknown query parameter `{other}`; use `wait`"
        )));
    }
    let wait = number(&query, "wait")?.unwrap_or(0);
    if wait > MAX_FEED_WAIT_SECS {
        return Err(ApiError::Invalid(format!(
            "`wait` is at most {MAX_FEED_WAIT_SECS} seconds, not {wait}"
        )));
    }
    let known: Vec<String> = req
        .headers()
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/").to_owned())
        .collect();
    let mut feed = api.service.subscribe();
    let current = Arc::clone(&feed.borrow_and_update());
    let matches = |p: &Published| known.iter().any(|tag| *tag == p.etag || tag == "*");
    if !matches(&current) {
        return Ok(document(&current));
    }
    if wait > 0 {
        let deadline = tokio::time::sleep(Duration::from_secs(wait));
        tokio::select! {
            changed = feed.changed() => {
                if changed.is_ok() {
                    let next = Arc::clone(&feed.borrow_and_update());
                    if !matches(&next) {
                        return Ok(document(&next));
                    }
                }
            }
            () = deadline => {}
            () = api.shutdown.cancelled() => {}
        }
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    set_feed_headers(&mut response, &current);
    Ok(response)
}

fn document(published: &Published) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(published.body.clone()));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    set_feed_headers(&mut response, published);
    response
}

fn set_feed_headers(response: &mut Response<Full<Bytes>>, published: &Published) {
    if let Ok(etag) = HeaderValue::from_str(&published.etag) {
        response.headers_mut().insert(ETAG, etag);
    }
    // Every sidecar must revalidate: a cached feed would hide a revocation.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}
