//! The gateway endpoints: `/v1/forward-auth` for nginx `auth_request`, Caddy
//! `forward_auth` and Traefik ForwardAuth, and the OpenID AuthZEN 1.0 evaluation
//! API (`/access/v1/evaluation`, `/access/v1/evaluations` and its metadata at
//! `/.well-known/authzen-configuration`), and Envoy's ext_authz HTTP service
//! (`/v1/ext-authz/...`: Envoy sends the original method, and the original path
//! after its configured `path_prefix`).
//!
//! Every decision goes through [`App::decide_query`], as on `/v1/is_authorized`:
//! the same engine call, metrics and decision record. Forward-auth answers with a
//! status a gateway acts on (200 allow, 403 deny, 401 no principal) and, on allow,
//! headers it can pass upstream; the principal is the gateway's header or, with
//! `--jwt-keys`, the original request's bearer JWT ([`crate::gateway::jwt`]).
//! AuthZEN answers every decision with a 200 and `{"decision": bool}`, as the
//! specification says.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use jiff::Timestamp;
use serde_json::{Value, json};

use super::{Answer, ApiError, App, json_response};
use crate::gateway::authzen::{self, Evaluations};
use crate::gateway::{self, PrincipalFailure, origin};
use crate::metrics::Route;
use crate::request::{self, Body, RequestError};
use crate::snapshot::Snapshot;

pub(super) const FORWARD_AUTH: &str = "/v1/forward-auth";
/// Envoy's `http_service.path_prefix`; the original path follows it.
pub(super) const EXT_AUTHZ_PREFIX: &str = "/v1/ext-authz";
pub(super) const EVALUATION: &str = "/access/v1/evaluation";
pub(super) const EVALUATIONS: &str = "/access/v1/evaluations";
pub(super) const AUTHZEN_METADATA: &str = "/.well-known/authzen-configuration";

/// The response headers a gateway copies upstream on allow.
pub const PRINCIPAL_HEADER: &str = "x-elevate-principal";
pub const GRANTS_HEADER: &str = "x-elevate-grants";
pub const DECISION_ID_HEADER: &str = "x-elevate-decision-id";
pub const VALID_UNTIL_HEADER: &str = "x-elevate-valid-until";
const REQUEST_ID: &str = "x-request-id";

/// The peer address of the connection a request came on, set by `serve`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Peer(pub SocketAddr);

impl App {
    pub(super) async fn gateway_route(
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
        let request_id = req.headers().get(REQUEST_ID).cloned();
        let mut response = match route {
            Route::ForwardAuth if method != Method::GET && method != Method::POST => {
                return Err(wrong_method("GET, POST"));
            }
            Route::Evaluation | Route::Evaluations if method != Method::POST => {
                return Err(wrong_method("POST"));
            }
            Route::AuthzenMetadata if method != Method::GET && method != Method::HEAD => {
                return Err(wrong_method("GET"));
            }
            Route::ForwardAuth => self.forward_auth(&req),
            // Any method: it is the original request's.
            Route::ExtAuthz => self.ext_authz(&req),
            Route::Evaluation => {
                let bytes = self.read_body(req).await?;
                self.evaluation(&bytes)
            }
            Route::Evaluations => {
                let bytes = self.read_body(req).await?;
                self.evaluations(&bytes)
            }
            Route::AuthzenMetadata => self.authzen_metadata(req.headers()),
            _ => {
                return Err(ApiError::NotFound {
                    method: method.to_string(),
                    path: path.to_owned(),
                });
            }
        };
        // AuthZEN: a PDP answering a request that has a request id MUST echo it.
        if let Some(id) = request_id {
            response
                .headers_mut()
                .insert(HeaderName::from_static(REQUEST_ID), id);
        }
        Ok(response)
    }

    /// `GET|POST /v1/forward-auth`: authorizes the original request the gateway
    /// describes in its headers.
    fn forward_auth(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if self.gateway.is_none() {
            return no_routes(FORWARD_AUTH);
        }
        let original = match origin::parse_original(req.headers()) {
            Ok(o) => o,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
        };
        let peer = req.extensions().get::<Peer>().map(|p| p.0);
        self.authorize_original(&original, req.headers(), peer)
    }

    /// `ANY /v1/ext-authz/ORIGINAL-PATH`: Envoy's ext_authz HTTP service. The
    /// request line is the original one, so `X-Original-*`/`X-Forwarded-*` headers
    /// are ignored here: only a client could have sent them.
    fn ext_authz(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if self.gateway.is_none() {
            return no_routes(EXT_AUTHZ_PREFIX);
        }
        let path = req
            .uri()
            .path()
            .strip_prefix(EXT_AUTHZ_PREFIX)
            .unwrap_or_default();
        if !path.starts_with('/') {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("`{EXT_AUTHZ_PREFIX}` must be followed by the original path"),
            );
        }
        let original = origin::Original {
            method: req.method().as_str().to_ascii_uppercase(),
            path: path.to_owned(),
            query: req.uri().query().unwrap_or_default().to_owned(),
        };
        let peer = req.extensions().get::<Peer>().map(|p| p.0);
        self.authorize_original(&original, req.headers(), peer)
    }

    /// Decides `original` for a gateway: 200 allow with the `X-Elevate-*` headers,
    /// 403 deny, 401 no principal; shared by forward-auth and both ext_authz modes
    /// (gRPC: [`crate::envoy`]), so they cannot drift apart.
    pub fn authorize_original(
        &self,
        original: &origin::Original,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Response<Full<Bytes>> {
        let Some(gateway) = &self.gateway else {
            return no_routes("ext_authz");
        };
        let config = gateway.config();
        // Who is asking comes first: an unauthenticated caller learns nothing about
        // which routes exist.
        let principal = match gateway.principal(headers, (self.clock)()) {
            Ok(p) => p,
            Err(e) => return unauthenticated(&e),
        };
        let what = format!("{} {}", original.method, original.path);
        let segments = match origin::parse_path(&original.path) {
            Ok(s) => s,
            Err(e) => {
                return refused(
                    "unsafe_path",
                    format!(
                        "the path of `{what}` {e}, so it could mean something else upstream; denied"
                    ),
                );
            }
        };
        let table = gateway.table();
        let Some(matched) = table.find(&original.method, &segments) else {
            tracing::debug!(request = %what, "no route; denied");
            return refused(
                "no_route",
                format!("no route matches `{what}`; denied (fail closed)"),
            );
        };
        let client_ip = match origin::client_ip(headers, config.client_ip_header.as_ref(), peer) {
            Ok(ip) => ip,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
        };
        let started = Instant::now();
        let snapshot = self.store.current();
        let body = gateway::body_for(
            &matched,
            &principal,
            original,
            client_ip,
            headers,
            &table,
            &snapshot.store,
        );
        let (query, answer) = match self.decide_body(
            &snapshot,
            body,
            (self.clock)(),
            started,
            usize::MAX,
        ) {
            Ok(decided) => decided,
            Err(e) => {
                return refused(
                    "invalid_request",
                    format!(
                        "route `{}` makes a request the schema rejects for `{principal}`: {e}; denied",
                        matched.route.name
                    ),
                );
            }
        };
        let allow = answer.decision == "Allow";
        let mut value = serde_json::to_value(&answer).unwrap_or_else(|_| json!({}));
        if let Value::Object(map) = &mut value {
            map.insert("route".into(), json!(matched.route.name));
            map.insert("principal".into(), json!(query.principal.to_string()));
            map.insert("action".into(), json!(query.action.to_string()));
            map.insert("resource".into(), json!(query.resource.to_string()));
        }
        let status = if allow {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        let mut response = json_response(status, &value);
        let out = response.headers_mut();
        set(out, DECISION_ID_HEADER, &answer.decision_id);
        if allow {
            set(out, PRINCIPAL_HEADER, &query.principal.to_string());
            set(out, GRANTS_HEADER, &answer.grants.join(","));
            if let Some(until) = answer.valid_until {
                set(out, VALID_UNTIL_HEADER, &until.to_string());
            }
        }
        response
    }

    /// Builds the query for `body` and decides it through the same path as
    /// `/v1/is_authorized`: metrics, and a decision record that keeps the request's
    /// context and entities (so `elevate replay` can decide it again). `bound` is an
    /// upper estimate of their JSON size.
    fn decide_body(
        &self,
        snapshot: &Snapshot,
        body: Body,
        now: Timestamp,
        started: Instant,
        bound: usize,
    ) -> Result<(request::Query, Answer), RequestError> {
        let kept = self.keep_json(&body, bound);
        let query =
            request::build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation)?;
        let (answer, _) = self.decide_query_with(snapshot, &query, now, started, false, kept);
        Ok((query, answer))
    }

    /// `POST /access/v1/evaluation`.
    fn evaluation(&self, bytes: &[u8]) -> Response<Full<Bytes>> {
        let body = match parse_value(bytes).and_then(|v| authzen::parse_evaluation(&v)) {
            Ok(b) => b,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e),
        };
        self.single_evaluation(body, bytes.len())
    }

    fn single_evaluation(&self, body: Body, bound: usize) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let snapshot = self.store.current();
        match self.decide_body(&snapshot, body, (self.clock)(), started, bound) {
            Ok((_, answer)) => json_response(StatusCode::OK, &authzen_answer(&answer)),
            Err(e) => error(StatusCode::BAD_REQUEST, "bad_request", authzen_message(&e)),
        }
    }

    /// `POST /access/v1/evaluations`: one snapshot and one instant for the whole
    /// batch, so its answers agree with each other.
    fn evaluations(&self, bytes: &[u8]) -> Response<Full<Bytes>> {
        let parsed = match parse_value(bytes).and_then(|v| authzen::parse_evaluations(&v)) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", e),
        };
        let (items, semantic) = match parsed {
            Evaluations::Single(body) => return self.single_evaluation(*body, bytes.len()),
            Evaluations::Batch { items, semantic } => (items, semantic),
        };
        let snapshot = self.store.current();
        let now = (self.clock)();
        let mut answers = Vec::with_capacity(items.len());
        for item in items {
            let started = Instant::now();
            let decided = item.map_err(|message| (400, message)).and_then(|body| {
                self.decide_body(&snapshot, body, now, started, bytes.len())
                    .map_err(|e| {
                        (
                            if e.is_internal() {
                                500
                            } else if e.is_unprocessable() {
                                422
                            } else {
                                400
                            },
                            authzen_message(&e),
                        )
                    })
            });
            let (decision, answer) = match decided {
                Ok((_, answer)) => (answer.decision == "Allow", authzen_answer(&answer)),
                // Decisions default to closed; the error is this evaluation's alone.
                Err((status, message)) => (
                    false,
                    json!({"decision": false, "context": {"error": {"status": status, "message": message}}}),
                ),
            };
            answers.push(answer);
            if semantic.stops_after(decision) {
                break;
            }
        }
        json_response(StatusCode::OK, &json!({ "evaluations": answers }))
    }

    /// `GET /.well-known/authzen-configuration`: where the evaluation endpoints are.
    fn authzen_metadata(&self, headers: &HeaderMap) -> Response<Full<Bytes>> {
        // The host the caller reached us by, if it is a plain host[:port]; anything
        // else would be reflected into URLs, so the listen address stands in.
        let host = headers
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .map_or_else(|| self.config.listen.to_string(), ToOwned::to_owned);
        let base = format!("http://{host}");
        json_response(
            StatusCode::OK,
            &json!({
                "policy_decision_point": base,
                "access_evaluation_endpoint": format!("{base}{EVALUATION}"),
                "access_evaluations_endpoint": format!("{base}{EVALUATIONS}"),
            }),
        )
    }
}

fn parse_value(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("request body is not valid JSON: {e}"))
}

/// The request's own field names are Cedar's (`principal`); an AuthZEN caller sent
/// `subject`.
fn authzen_message(error: &RequestError) -> String {
    error.to_string().replacen("`principal`", "`subject`", 1)
}

/// An AuthZEN answer: `decision`, and in `context` the decision id, the determining
/// policies and grants, and a sentence for administrators.
fn authzen_answer(answer: &Answer) -> Value {
    let allow = answer.decision == "Allow";
    let reasons = &answer.diagnostics.reason;
    let list = |ids: &[String]| {
        ids.iter()
            .map(|id| format!("`{id}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut sentence = match (allow, reasons.is_empty()) {
        (true, _) => format!("allowed by {}", list(reasons)),
        (false, false) => format!("denied by {}", list(reasons)),
        (false, true) => "denied: no policy permits this request".to_owned(),
    };
    if answer.grants_suspended {
        sentence.push_str("; grants are suspended because the grant feed is stale");
    }
    let mut context = json!({
        "decision_id": answer.decision_id,
        "reasons": reasons,
        "grants": answer.grants,
        "reason_admin": {"en": sentence},
    });
    if let Value::Object(map) = &mut context {
        if let Some(until) = answer.valid_until {
            map.insert("valid_until".into(), json!(until));
        }
        if !answer.diagnostics.errors.is_empty() {
            map.insert("errors".into(), json!(answer.diagnostics.errors));
        }
        if answer.grants_suspended {
            map.insert("grants_suspended".into(), json!(true));
        }
    }
    json!({"decision": allow, "context": context})
}

/// A denial that never reached the engine (no route, unsafe path, a request the
/// schema rejects): a 403 the gateway enforces, with the reason in the body.
fn refused(reason: &'static str, message: String) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::FORBIDDEN,
        &json!({"decision": "Deny", "reason": reason, "error": message}),
    )
}

/// A 401. For a bearer token that was sent but refused, `WWW-Authenticate` says
/// `error="invalid_token"` (RFC 6750 section 3.1); the reason is in the body and a
/// debug log line, never the token itself.
fn unauthenticated(failure: &PrincipalFailure) -> Response<Full<Bytes>> {
    let mut response = ApiError::Unauthenticated(failure.to_string()).into_response();
    if let PrincipalFailure::Token(e) = failure {
        tracing::debug!(reason = e.reason(), error = %e, "bearer token refused");
        if e.had_token() {
            response.headers_mut().insert(
                hyper::header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="elevate", error="invalid_token""#),
            );
        }
    }
    response
}

fn no_routes(endpoint: &str) -> Response<Full<Bytes>> {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("`{endpoint}` needs a route table; start elevate with `--routes FILE`"),
    )
}

fn error(status: StatusCode, kind: &'static str, message: String) -> Response<Full<Bytes>> {
    json_response(status, &json!({"error": message, "kind": kind}))
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    // A value that cannot be a header (a grant id with a newline, say) is left out:
    // the body still says it.
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), v);
    }
}
