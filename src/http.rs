//! The HTTP API: the hyper service, routing, body limits, JSON in and out, the one
//! `ApiError` → status mapping, and health, readiness, status and metrics endpoints.
//!
//! A request loads the snapshot once and uses that `Arc` throughout; nothing here
//! touches disk or network while answering. Connections are bounded in number, in
//! request-head time (HTTP/1.1, from a head's first byte: [`limits::Head`]) and in idle
//! time.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cedar_policy::Decision;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::audit::{DecisionLog, DecisionRecord, GrantUse, NearMissUse, RequestJson};
use crate::config::HttpConfig;
use crate::engine::{self, EvalError, Outcome};
use crate::explain::{self, Explanation, NearMiss};
use crate::metrics::{Metrics, Route};
use crate::request::{self, Body, RequestError};
use crate::snapshot::{Snapshot, Store};
use crate::workflow::{ErrorKind, WorkflowError};

mod cache;
mod gateway;
mod limits;
pub mod listener;
mod workflow;
pub use cache::DecisionCache;
pub use gateway::{DECISION_ID_HEADER, GRANTS_HEADER, PRINCIPAL_HEADER, VALID_UNTIL_HEADER};
pub use workflow::WorkflowApi;

/// The clock decisions are taken at; injectable so tests can step it.
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(Timestamp::now)
}

/// Everything a request handler needs, shared by all connections.
pub struct App {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub log: DecisionLog,
    pub config: HttpConfig,
    pub clock: Clock,
    /// The workflow, when this process runs it (`serve --workflow`).
    pub workflow: Option<Arc<WorkflowApi>>,
    /// The route table for `/v1/forward-auth`, when one is configured (`--routes`).
    pub gateway: Option<Arc<crate::gateway::Gateway>>,
    /// The listener's TLS, for `/v1/status` (`--tls-cert`).
    pub tls: Option<Arc<crate::tls::ServerTls>>,
    /// Answers of `/v1/is_authorized` reused while they provably hold
    /// (`--decision-cache-bytes`; see [`cache`]).
    pub cache: DecisionCache,
}

/// A client's mistake or our failure, mapped to one status by [`ApiError::status`].
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("`requests[{index}]`: {error}")]
    BatchItem { index: usize, error: RequestError },
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("cannot read request body: {0}")]
    Body(String),
    #[error("request body not received within {ms} ms of its headers")]
    BodyTimeout { ms: u128 },
    #[error("request body nests arrays and objects deeper than the limit of {limit} levels")]
    TooDeep { limit: usize },
    #[error("no route for `{method} {path}`")]
    NotFound { method: String, path: String },
    #[error("`{path}` does not allow `{method}`; use `{allowed}`")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: &'static str,
    },
    #[error("not ready: {0}")]
    NotReady(String),
    #[error(transparent)]
    Workflow(WorkflowError),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Invalid(String),
    #[error(
        "`{path}` is a workflow route, and this server runs no workflow (`serve --workflow DATA_DIR`)"
    )]
    WorkflowDisabled { path: String },
    #[error(
        "`GET /v1/grants` needs a client certificate from this server's client CA (`--tls-client-ca`); connect with one"
    )]
    ClientCertRequired,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// 400/422 for client mistakes, 413 for size, 404/405 for routing, 503 when not ready.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Request(e) | Self::BatchItem { error: e, .. } => {
                if e.is_internal() {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else if e.is_unprocessable() {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::BAD_REQUEST
                }
            }
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Body(_) | Self::TooDeep { .. } => StatusCode::BAD_REQUEST,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Workflow(e) => match e.kind() {
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::Conflict => StatusCode::CONFLICT,
                ErrorKind::Forbidden => StatusCode::FORBIDDEN,
                ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                // The disk, not the request: the same command may succeed later.
                ErrorKind::Internal if matches!(e, WorkflowError::Log(_)) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::WorkflowDisabled { .. } => StatusCode::NOT_FOUND,
            Self::ClientCertRequired => StatusCode::FORBIDDEN,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A machine-readable word for the error, beside its sentence.
    pub fn kind(&self) -> &'static str {
        match self.status() {
            StatusCode::UNAUTHORIZED => "unauthenticated",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::REQUEST_TIMEOUT => "timeout",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::BAD_REQUEST => "bad_request",
            _ => "internal",
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let status = self.status();
        // Our failures, not a readiness probe's 503 while a feed is awaited.
        if status == StatusCode::INTERNAL_SERVER_ERROR
            || matches!(self, Self::Workflow(_)) && status.is_server_error()
        {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = json_response(
            status,
            &json!({ "error": self.to_string(), "kind": self.kind() }),
        );
        if let Self::MethodNotAllowed { allowed, .. } = self {
            response
                .headers_mut()
                .insert(hyper::header::ALLOW, HeaderValue::from_static(allowed));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"elevate\""),
            );
        }
        response
    }
}

fn json_response(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    bytes_response(
        status,
        serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

/// A response with a JSON body already serialized.
fn bytes_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The answer to one decision request; field names as cedar-agent's.
#[derive(Debug, Serialize)]
pub struct Answer {
    pub decision: &'static str,
    pub diagnostics: Diagnostics,
    pub grants: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<Timestamp>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub grants_suspended: bool,
    pub decision_id: String,
}

impl Answer {
    /// The answer for an engine outcome.
    pub fn new(outcome: Outcome, decision_id: String) -> Self {
        Self {
            decision: decision_str(outcome.decision),
            diagnostics: Diagnostics {
                reason: outcome
                    .reasons
                    .iter()
                    .map(|r| crate::feed::raw_id(r).to_owned())
                    .collect(),
                errors: outcome.errors,
            },
            grants: outcome
                .grants
                .iter()
                .map(|g| crate::feed::raw_id(&g.id).to_owned())
                .collect(),
            valid_until: outcome.valid_until,
            grants_suspended: outcome.grants_suspended,
            decision_id,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Diagnostics {
    pub reason: Vec<String>,
    pub errors: Vec<EvalError>,
}

fn decision_str(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "Allow",
        Decision::Deny => "Deny",
    }
}

/// An answer with its explanation (`?explain=true`): the answer's fields, then
/// `explanation`. Answers without one are serialized as plain [`Answer`]s, so asking
/// for nothing changes nothing, byte for byte.
#[derive(Debug, Serialize)]
struct Explained<'a> {
    #[serde(flatten)]
    answer: &'a Answer,
    explanation: &'a Explanation,
}

/// Whether a decision route's query string asks for explanations. `explain` is the
/// only parameter: anything else is a mistake worth saying, not ignoring.
fn explain_param(query: Option<&str>, path: &str) -> Result<bool, ApiError> {
    let mut explain = false;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match (&*key, &*value) {
            ("explain", "true") => explain = true,
            ("explain", "false") => explain = false,
            ("explain", other) => {
                return Err(ApiError::Invalid(format!(
                    "query parameter `explain` must be `true` or `false`, not `{other}`"
                )));
            }
            (other, _) => {
                return Err(ApiError::Invalid(format!(
                    "unknown query parameter `{other}` on `{path}`; the only one is `explain=true|false`"
                )));
            }
        }
    }
    Ok(explain)
}

impl App {
    /// Decides one parsed body against `snapshot` and records it; `body_len` bounds
    /// the size of the JSON the record keeps. With `seed`, also returns what the
    /// decision cache needs to reuse the answer, if it can be reused.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        snapshot: &Snapshot,
        body: Body,
        now: Timestamp,
        started: Instant,
        explain: bool,
        body_len: usize,
        seed: bool,
    ) -> Result<(Answer, Option<Explanation>, Option<cache::Seed>), RequestError> {
        let kept = self.keep_json(&body, body_len);
        let query =
            request::build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation)?;
        Ok(self.decide_query_seeded(snapshot, &query, now, started, explain, kept, seed))
    }

    /// The request JSON the decision record keeps, when there is a decision log.
    fn keep_json(&self, body: &Body, bound: usize) -> RequestJson {
        if self.log.enabled() {
            RequestJson::keep(body.context.as_ref(), body.entities.as_ref(), bound)
        } else {
            RequestJson::default()
        }
    }

    /// Decides a built query, counts it and queues its decision record with the
    /// request JSON it keeps (for `elevate replay`); explains it when asked to.
    fn decide_query_with(
        &self,
        snapshot: &Snapshot,
        query: &request::Query,
        now: Timestamp,
        started: Instant,
        explain: bool,
        kept: RequestJson,
    ) -> (Answer, Option<Explanation>) {
        let (answer, explanation, _) =
            self.decide_query_seeded(snapshot, query, now, started, explain, kept, false);
        (answer, explanation)
    }

    #[allow(clippy::too_many_arguments)]
    fn decide_query_seeded(
        &self,
        snapshot: &Snapshot,
        query: &request::Query,
        now: Timestamp,
        started: Instant,
        explain: bool,
        kept: RequestJson,
        seed: bool,
    ) -> (Answer, Option<Explanation>, Option<cache::Seed>) {
        let outcome = engine::decide(snapshot, query, now);
        self.metrics.decision(
            outcome.is_allow(),
            !outcome.grants.is_empty(),
            started.elapsed(),
        );
        let explanation = explain.then(|| explain::explain_outcome(snapshot, query, now, &outcome));
        let decision_id = self.log.next_id();
        let mut cached_record = None;
        if self.log.enabled() {
            let near_misses = match &explanation {
                Some(e) => e
                    .near_misses
                    .iter()
                    .filter(|m| m.would_allow)
                    .cloned()
                    .collect(),
                None => explain::near_misses(snapshot, query, now, &outcome),
            };
            let record = record(
                &decision_id,
                snapshot,
                query,
                &outcome,
                now,
                &near_misses,
                kept,
            );
            if seed {
                cached_record = Some(DecisionRecord {
                    decision_id: String::new(),
                    ..record.clone()
                });
            }
            self.log.submit(record);
        }
        let seed = seed
            .then(|| cache::Seed::new(snapshot, query, &outcome, now, cached_record))
            .flatten();
        tracing::debug!(
            decision_id = %decision_id,
            decision = decision_str(outcome.decision),
            grants = outcome.grants.len(),
            "decided"
        );
        (Answer::new(outcome, decision_id), explanation, seed)
    }

    /// Answers from the decision cache: counted, numbered and logged as a fresh
    /// decision is, from the same bytes.
    fn answer_cached(
        &self,
        hit: &cache::Cached,
        now: Timestamp,
        started: Instant,
    ) -> Response<Full<Bytes>> {
        self.metrics
            .decision(hit.allow, hit.used_grant(), started.elapsed());
        self.metrics.decision_cache(true);
        let decision_id = self.log.next_id();
        if let Some(record) = &hit.record
            && self.log.enabled()
        {
            self.log.submit(DecisionRecord {
                decision_id: decision_id.clone(),
                time: now,
                ..DecisionRecord::clone(record)
            });
        }
        tracing::debug!(
            decision_id = %decision_id,
            decision = if hit.allow { "Allow" } else { "Deny" },
            grants = hit.grants,
            cached = true,
            "decided"
        );
        bytes_response(StatusCode::OK, hit.answer(&decision_id))
    }

    /// A fresh answer to `body`, built from the head the cache keeps (so a hit later
    /// returns what this miss returns, byte for byte), and kept if `seed` allows.
    fn answer_and_keep(
        &self,
        mut answer: Answer,
        seed: Option<cache::Seed>,
        body: &[u8],
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Response<Full<Bytes>> {
        let decision_id = std::mem::take(&mut answer.decision_id);
        let blank = serde_json::to_vec(&answer).unwrap_or_default();
        let Some(head) = cache::head_of(&blank) else {
            answer.decision_id = decision_id;
            return json_response(StatusCode::OK, &answer);
        };
        if let Some(seed) = seed {
            self.cache.insert(body, snapshot, now, head, seed);
        }
        bytes_response(StatusCode::OK, cache::answer_bytes(head, &decision_id))
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        let version = req.version();
        let path = req.uri().path().to_owned();
        let route = match path.as_str() {
            "/v1/is_authorized" => Route::IsAuthorized,
            "/v1/batch_is_authorized" => Route::Batch,
            "/healthz" => Route::Health,
            "/readyz" => Route::Ready,
            "/v1/status" => Route::Status,
            "/metrics" => Route::Metrics,
            "/v1/grants" => Route::Grants,
            gateway::FORWARD_AUTH => Route::ForwardAuth,
            gateway::EVALUATION => Route::Evaluation,
            gateway::EVALUATIONS => Route::Evaluations,
            gateway::AUTHZEN_METADATA => Route::AuthzenMetadata,
            p if p
                .strip_prefix(gateway::EXT_AUTHZ_PREFIX)
                .is_some_and(|rest| rest.starts_with('/')) =>
            {
                Route::ExtAuthz
            }
            _ if workflow::Target::parse(&path).is_some() => Route::Workflow,
            _ => Route::Other,
        };
        let result = self.route(route, &method, &path, req).await;
        let mut response = result.unwrap_or_else(ApiError::into_response);
        if response.status() == StatusCode::PAYLOAD_TOO_LARGE && version < hyper::Version::HTTP_2 {
            // The rest of the body was never read, so the connection cannot carry another
            // request; say so instead of letting a keep-alive client find out the hard way.
            response
                .headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        self.metrics.response(route, response.status().as_u16());
        response
    }

    async fn route(
        &self,
        route: Route,
        method: &Method,
        path: &str,
        req: Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        let wrong_method = |allowed| ApiError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_owned(),
            allowed,
        };
        match route {
            Route::IsAuthorized | Route::Batch if method != Method::POST => {
                Err(wrong_method("POST"))
            }
            Route::Health | Route::Ready | Route::Status | Route::Metrics
                if method != Method::GET && method != Method::HEAD =>
            {
                Err(wrong_method("GET"))
            }
            Route::IsAuthorized => {
                let explain = explain_param(req.uri().query(), path)?;
                let bytes = self.read_body(req).await?;
                let started = Instant::now();
                let snapshot = self.store.current();
                let now = (self.clock)();
                // Explanations are not cached: they say how each grant stands at `now`.
                let cacheable = !explain && self.cache.enabled();
                if cacheable {
                    if let Some(hit) = self.cache.get(&bytes, &snapshot, now) {
                        return Ok(self.answer_cached(&hit, now, started));
                    }
                    self.metrics.decision_cache(false);
                }
                let body: Body = parse_json(&bytes)?;
                let (answer, explanation, seed) = self.decide(
                    &snapshot,
                    body,
                    now,
                    started,
                    explain,
                    bytes.len(),
                    cacheable,
                )?;
                Ok(match &explanation {
                    None if cacheable => self.answer_and_keep(answer, seed, &bytes, &snapshot, now),
                    None => json_response(StatusCode::OK, &answer),
                    Some(explanation) => json_response(
                        StatusCode::OK,
                        &Explained {
                            answer: &answer,
                            explanation,
                        },
                    ),
                })
            }
            Route::Batch => {
                let explain = explain_param(req.uri().query(), path)?;
                let bytes = self.read_body(req).await?;
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Batch {
                    requests: Vec<Body>,
                }
                let batch: Batch = parse_json(&bytes)?;
                // One snapshot and one instant for the whole batch: its answers agree.
                let snapshot = self.store.current();
                let now = (self.clock)();
                // Every item is checked before any is decided: a rejected batch leaves no
                // decision records or counts behind for answers the client never saw.
                let queries = batch
                    .requests
                    .into_iter()
                    .enumerate()
                    .map(|(index, body)| {
                        let kept = self.keep_json(&body, bytes.len());
                        request::build_query(
                            body,
                            &snapshot.bundle,
                            &snapshot.store,
                            snapshot.validation,
                        )
                        .map(|query| (query, kept))
                        .map_err(|error| ApiError::BatchItem { index, error })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let decided = queries.into_iter().map(|(query, kept)| {
                    self.decide_query_with(&snapshot, &query, now, Instant::now(), explain, kept)
                });
                if !explain {
                    let results: Vec<Answer> = decided.map(|(answer, _)| answer).collect();
                    return Ok(json_response(
                        StatusCode::OK,
                        &json!({ "results": results }),
                    ));
                }
                #[derive(Serialize)]
                #[serde(untagged)]
                enum Item<'a> {
                    Plain(&'a Answer),
                    Explained(Explained<'a>),
                }
                let decided: Vec<(Answer, Option<Explanation>)> = decided.collect();
                let results: Vec<Item<'_>> = decided
                    .iter()
                    .map(|(answer, explanation)| match explanation {
                        Some(explanation) => Item::Explained(Explained {
                            answer,
                            explanation,
                        }),
                        None => Item::Plain(answer),
                    })
                    .collect();
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "results": results }),
                ))
            }
            Route::Health => Ok(json_response(StatusCode::OK, &json!({ "status": "alive" }))),
            Route::Ready => {
                let snapshot = self.store.current();
                let now = (self.clock)();
                if let Some(why) = snapshot.suspension(now) {
                    return Err(ApiError::NotReady(why.to_string()));
                }
                Ok(json_response(
                    StatusCode::OK,
                    &json!({ "status": "ready", "generation": snapshot.generation }),
                ))
            }
            Route::Status => Ok(json_response(StatusCode::OK, &self.status_document())),
            Route::Metrics => {
                let snapshot = self.store.current();
                let text = self
                    .metrics
                    .render(&snapshot, &self.store.status(), (self.clock)());
                let mut response = Response::new(Full::new(Bytes::from(text)));
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                Ok(response)
            }
            Route::Grants
                if req
                    .extensions()
                    .get::<crate::tls::TlsPeer>()
                    .is_some_and(|peer| !peer.may_read_feed()) =>
            {
                Err(ApiError::ClientCertRequired)
            }
            Route::Workflow | Route::Grants => match workflow::Target::parse(path) {
                Some(target) => self.workflow_route(target, method, path, req).await,
                None => Err(ApiError::NotFound {
                    method: method.to_string(),
                    path: path.to_owned(),
                }),
            },
            Route::ForwardAuth
            | Route::Evaluation
            | Route::Evaluations
            | Route::AuthzenMetadata
            | Route::ExtAuthz => self.gateway_route(route, method, path, req).await,
            // The gRPC route is never an HTTP path.
            Route::Other | Route::ExtAuthzGrpc => Err(ApiError::NotFound {
                method: method.to_string(),
                path: path.to_owned(),
            }),
        }
    }

    fn status_document(&self) -> serde_json::Value {
        let snapshot = self.store.current();
        let now = (self.clock)();
        let inputs: serde_json::Map<String, serde_json::Value> = self
            .store
            .status()
            .into_iter()
            .map(|(input, status)| {
                (
                    input.as_str().to_owned(),
                    serde_json::to_value(status).unwrap_or_default(),
                )
            })
            .collect();
        let rejected: Vec<_> = snapshot.grants.rejected.iter().take(100).collect();
        json!({
            "generation": snapshot.generation,
            "revisions": snapshot.revisions,
            "validation": snapshot.validation,
            "inputs": inputs,
            "grants": {
                "accepted": snapshot.grants.len(),
                "in_force": snapshot.grants.in_force_count(now),
                "rejected_count": snapshot.grants.rejected.len(),
                "rejected": rejected,
                "suspended": snapshot.grants_suspended(now),
            },
            "policies": {
                "static": snapshot.bundle.statics.policies().count(),
                "roles": snapshot.bundle.roles.keys().map(ToString::to_string).collect::<Vec<_>>(),
                "findings": snapshot.bundle.findings.len() + snapshot.store.findings.len(),
            },
            "entities": snapshot.store.len(),
            "reloader": self.store.reloader_priority(),
            "workflow": self.workflow.as_ref().map(|w| json!({
                "service": w.service.status(),
                "tokens": w.tokens.status(),
            })),
            "gateway": self.gateway.as_ref().map(|g| json!({ "routes": g.status() })),
            "tls": self.tls.as_ref().and_then(|t| t.status()),
        })
    }

    async fn read_body(&self, req: Request<Incoming>) -> Result<Bytes, ApiError> {
        let limit = self.config.max_body;
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(ApiError::TooLarge { limit });
        }
        let timeout = self.config.body_timeout;
        let mut collect = std::pin::pin!(Limited::new(req.into_body(), limit).collect());
        // A small body has usually arrived with its head: take it without arming a
        // timer, which would cost more than the rest of a cached answer.
        let first = std::future::poll_fn(|cx| Poll::Ready(collect.as_mut().poll(cx))).await;
        let collected =
            match first {
                Poll::Ready(collected) => collected,
                Poll::Pending => tokio::time::timeout(timeout, collect).await.map_err(|_| {
                    ApiError::BodyTimeout {
                        ms: timeout.as_millis(),
                    }
                })?,
            };
        match collected {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                let depth = self.config.max_json_depth;
                if limits::too_deep(&bytes, depth) {
                    return Err(ApiError::TooDeep { limit: depth });
                }
                Ok(bytes)
            }
            Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                Err(ApiError::TooLarge { limit })
            }
            Err(err) => Err(ApiError::Body(err.to_string())),
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::Request(RequestError::Json(e.to_string())))
}

fn record(
    decision_id: &str,
    snapshot: &Snapshot,
    query: &request::Query,
    outcome: &Outcome,
    now: Timestamp,
    near_misses: &[NearMiss],
    kept: RequestJson,
) -> DecisionRecord {
    DecisionRecord {
        decision_id: decision_id.to_owned(),
        time: now,
        principal: query.principal.to_string(),
        action: query.action.to_string(),
        resource: query.resource.to_string(),
        decision: decision_str(outcome.decision),
        reasons: outcome
            .reasons
            .iter()
            .map(|r| crate::feed::raw_id(r).to_owned())
            .collect(),
        errors: outcome.errors.iter().map(|e| e.policy_id.clone()).collect(),
        grants: outcome
            .grants
            .iter()
            .map(|g| GrantUse {
                id: crate::feed::raw_id(&g.id).to_owned(),
                role: g.role.to_string(),
                scope: g.scope.to_string(),
                expires_at: g.expires_at,
                ticket: g.ticket.clone(),
            })
            .collect(),
        valid_until: outcome.valid_until,
        grants_suspended: outcome.grants_suspended,
        generation: snapshot.generation,
        revisions: snapshot.revisions.clone(),
        near_misses: near_misses
            .iter()
            .map(|m| NearMissUse {
                id: m.grant.clone(),
                why: m.status.as_str(),
                at: m.at(),
            })
            .collect(),
        context: kept.context,
        entities: kept.entities,
        omitted: kept.omitted,
    }
}

/// Serves `app` on an already-bound listener (TCP, or a Unix socket:
/// [`listener::UnixSocket`]) until `shutdown`, then drains in-flight requests for at
/// most `grace`.
///
/// # Errors
/// Accepting fails in a way that is not about one connection.
pub async fn serve<L: listener::Listener>(
    listener: L,
    app: Arc<App>,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let connections = limits::Connections::new(app.config.max_connections);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    limits::configure(&mut builder, &app.config);
    let builder = Arc::new(builder);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = connections.admit() else {
            tracing::debug!(peer = ?peer, "every connection is busy; closing the new one");
            drop(stream);
            continue;
        };
        let slot = Arc::new(slot);
        let tls = L::tls_peer(&stream);
        let activity = Arc::new(Activity::new(app.config.header_timeout));
        let io = TokioIo::new(Tracked {
            inner: stream,
            activity: Arc::clone(&activity),
            reader: limits::Reader::new(),
        });
        let handler = Arc::clone(&app);
        let in_service = Arc::clone(&slot);
        let heads = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let busy = in_service.busy();
            heads.head.request_started();
            let bodiless = hyper::body::Body::is_end_stream(req.body());
            let heads = Arc::clone(&heads);
            // Forward-auth's `source_ip` when no gateway header names the client; a
            // Unix socket's peer has no address, so only a header can name it.
            if let Some(peer) = peer {
                req.extensions_mut().insert(gateway::Peer(peer));
            }
            if let Some(tls) = &tls {
                req.extensions_mut().insert(tls.peer());
            }
            let app = Arc::clone(&handler);
            async move {
                let response = app.handle(req).await;
                drop(busy);
                heads.head.response_returned(bodiless);
                Ok::<_, Infallible>(response)
            }
        });
        let conn = builder
            .serve_connection_with_upgrades(io, service)
            .into_owned();
        let conn = graceful.watch(conn);
        let idle = idle_for(Arc::clone(&activity), app.config.idle_timeout);
        tokio::spawn(async move {
            tokio::select! {
                result = conn => {
                    if let Err(err) = result {
                        tracing::debug!(peer = ?peer, error = %err, "connection ended with an error");
                    }
                }
                () = idle => {
                    tracing::debug!(peer = ?peer, "closing idle connection");
                }
                // What hyper's own header read timeout does, but only for a head on
                // its way: a slowloris defence that spares idle kept-alive connections.
                () = activity.head.overdue() => {
                    tracing::debug!(peer = ?peer, "request head not received within the header timeout; closing the connection");
                }
                () = slot.evicted() => {
                    tracing::debug!(peer = ?peer, "connection limit reached; closing the connection idle longest");
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("shutdown grace period over; closing connections still open");
        }
    }
    Ok(())
}

/// When a connection last moved a byte, as milliseconds since it was accepted, and
/// the deadline of the request head it is receiving.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    head: limits::Head,
}

impl Activity {
    fn new(header_timeout: Duration) -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            head: limits::Head::new(header_timeout),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Resolves once the connection has moved no byte for `timeout`.
async fn idle_for(activity: Arc<Activity>, timeout: Duration) {
    loop {
        let deadline = activity.last() + timeout;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// A socket that records activity, for the idle timeout and the head deadline.
struct Tracked<T> {
    inner: T,
    activity: Arc<Activity>,
    reader: limits::Reader,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(poll, Poll::Ready(Ok(()))) {
            let new = buf.filled().get(before..).unwrap_or_default();
            if !new.is_empty() {
                this.activity.touch();
                this.activity.head.on_read(&mut this.reader, new);
            }
        }
        poll
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests;
