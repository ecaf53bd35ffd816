//! Fuzz target bodies: one plain function over bytes per parser that takes outside
//! input. Each parses, then runs the code that consumes the parse (the engine, the
//! route matcher, the forward-auth decision path...) and asserts cheap invariants.
//! `fuzz/` (cargo-fuzz, nightly) calls them; on stable, `tests/fuzz_corpus.rs` runs
//! them over the seed corpus in `fuzz/corpus/` and over proptest-generated inputs.
//!
//! A target must never panic on any input; the only panics here are the invariant
//! asserts, which mean a bug in the crate, and a broken checkout (the shipped
//! policies, entities, feed or route table missing), which is not input.
//!
//! Every target decides against one fixture built once per process: the shipped
//! `policies/` and `schema/`, `deploy/local/entities.json`, the example feed
//! `deploy/local/grants.json` and route table `deploy/local/routes.toml`, with the
//! clock fixed at [`NOW`], inside the example feed's grant windows.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use cedar_policy::EntityUid;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};
use jiff::Timestamp;
use prost::Message;
use serde_json::{Value, json};

use crate::config::{ReloadConfig, Sources, Validation};
use crate::engine::Outcome;
use crate::feed::{Document, GrantIndex};
use crate::gateway::{RouteTable, origin, uid_json};
use crate::http::App;
use crate::request::{Body, Query, parse_uid};
use crate::signing::{FeedSigner, FeedTrust};
use crate::snapshot::{RawInputs, Snapshot, Store};

/// The fixed clock of every target: inside the example feed's grant windows.
pub const NOW: &str = "2026-12-03T18:00:00Z";

/// The header the forward-auth fixture reads the client IP from.
pub const CLIENT_IP_HEADER: &str = "x-forwarded-for";

/// Separates a route table from the requests matched against it in a `routes` input.
pub const ROUTES_SEPARATOR: &str = "\n%%\n";

/// Everything the targets decide against, built once.
struct Fixture {
    now: Timestamp,
    store: Arc<Store>,
    app: App,
    raw: RawInputs,
    /// The example feed, as the held document a signed feed is compared with.
    held: Document,
    signer: FeedSigner,
    trust: FeedTrust,
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn sources(grants: bool) -> Sources {
    Sources {
        policies: repo("policies"),
        schema: Some(repo("schema/elevate.cedarschema")),
        entities: Some(repo("deploy/local/entities.json")),
        grants: grants.then(|| repo("deploy/local/grants.json")),
        validation: Validation::Strict,
    }
}

#[expect(
    clippy::expect_used,
    reason = "the fixture is the checkout's shipped files, not fuzz input: a target cannot run without them"
)]
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let now: Timestamp = NOW.parse().expect("NOW is a timestamp");
        let metrics = Arc::new(
            crate::metrics::Metrics::new(prometheus::Registry::new()).expect("metrics register"),
        );
        let store = Arc::new(
            Store::load(sources(true), Arc::clone(&metrics), now)
                .expect("the shipped policies, entities and example feed load"),
        );
        let gateway = crate::gateway::Gateway::load(
            crate::gateway::Config {
                routes: repo("deploy/local/routes.toml"),
                principal_header: HeaderName::from_static(crate::gateway::DEFAULT_PRINCIPAL_HEADER),
                principal_type: crate::gateway::DEFAULT_PRINCIPAL_TYPE
                    .parse()
                    .expect("a type name"),
                client_ip_header: Some(HeaderName::from_static(CLIENT_IP_HEADER)),
                reload: ReloadConfig::default(),
                jwt: None,
            },
            Arc::clone(&store),
            Arc::clone(&metrics),
        )
        .expect("the example route table loads");
        // Off: no writer thread, nothing written; the decision path is the same.
        let (log, _writer) = crate::audit::DecisionLog::spawn(
            &crate::config::DecisionLog::Off,
            1,
            Arc::clone(&metrics),
        )
        .expect("an off decision log needs no file");
        let app = App {
            store: Arc::clone(&store),
            metrics,
            log,
            config: crate::config::HttpConfig::default(),
            clock: Arc::new(move || now),
            workflow: None,
            gateway: Some(gateway),
            tls: None,
            cache: crate::http::DecisionCache::new(0),
        };
        let raw = RawInputs::load(&sources(false)).expect("the shipped inputs load");
        let held = crate::feed::parse_document(
            &std::fs::read(repo("deploy/local/grants.json")).expect("the example feed reads"),
        )
        .expect("the example feed parses");
        let signer = FeedSigner::generate().expect("the system random generator works");
        let trust = FeedTrust::new(
            vec![signer.public_key()],
            std::time::Duration::from_secs(300),
        );
        Fixture {
            now,
            store,
            app,
            raw,
            held,
            signer,
            trust,
        }
    })
}

/// The shipped snapshot the targets decide against.
fn snapshot() -> Arc<Snapshot> {
    fixture().store.current()
}

/// Runs a future that never waits (the gateway answers are in memory) to its end.
fn ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// The invariants of any engine outcome for `query` at `now`.
fn check_outcome(outcome: &Outcome, query: &Query, now: Timestamp) {
    if outcome.is_allow() {
        assert!(
            !outcome.reasons.is_empty(),
            "an Allow must name the policies it rests on"
        );
    } else {
        assert!(
            outcome.grants.is_empty(),
            "a Deny must not name grants: {:?}",
            outcome.grants
        );
    }
    for grant in &outcome.grants {
        assert!(
            grant.in_force(now),
            "an Allow relied on grant `{}` which is not in force",
            grant.id
        );
        assert!(
            outcome.reasons.contains(&grant.id),
            "grant `{}` is named but not a reason",
            grant.id
        );
        assert!(
            grant.principal == query.principal,
            "grant `{}` of `{}` was used for `{}`",
            grant.id,
            grant.principal,
            query.principal
        );
    }
    if outcome.grants_suspended {
        assert!(outcome.grants.is_empty(), "suspended grants were used");
    }
}

/// Builds and decides a decision body the way `/v1/is_authorized` does; whether it
/// was allowed, if it was a request the schema accepts.
fn decide_body(body: Body, snapshot: &Snapshot, now: Timestamp) -> Option<bool> {
    let query =
        crate::request::build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation)
            .ok()?;
    let outcome = crate::engine::decide(snapshot, &query, now);
    check_outcome(&outcome, &query, now);
    Some(outcome.is_allow())
}

// ------------------------------------------------------------------- the targets

/// The grant feed: parse, index against the shipped policies, and check that the
/// accepted grants, written out again, parse and index to the same grants.
pub fn feed(bytes: &[u8]) {
    let Ok(doc) = crate::feed::parse_document(bytes) else {
        return;
    };
    let snapshot = snapshot();
    let index = GrantIndex::build(&doc, &snapshot.bundle);
    assert_eq!(
        index.len() + index.rejected.len(),
        doc.grants.len(),
        "every grant is accepted or rejected, once"
    );
    let now = fixture().now;
    assert!(index.in_force_count(now) <= index.len());
    let mut accepted: Vec<_> = index.iter().cloned().collect();
    for grant in &accepted {
        assert!(
            grant.not_before < grant.expires_at,
            "grant `{}` was accepted with an empty window",
            grant.id
        );
        assert!(
            index.of(&grant.principal).iter().any(|g| g.id == grant.id),
            "grant `{}` is not indexed under its principal",
            grant.id
        );
    }
    // A grant is accepted only under an id no earlier grant claimed, even a rejected
    // one: otherwise a copy slips in under the id of a grant that was refused.
    let mut claimed: Vec<&str> = Vec::new();
    for entry in doc.grants.iter() {
        let id = match entry {
            crate::feed::Entry::Parsed(g) => {
                let id = crate::feed::raw_id(&g.id);
                let accepted = accepted.iter().any(|a| Arc::ptr_eq(a, g));
                assert!(
                    !accepted || !claimed.contains(&id),
                    "grant `{id}` was accepted under an id an earlier grant claimed"
                );
                Some(id)
            }
            crate::feed::Entry::Malformed { id, .. } => id.as_deref(),
        };
        claimed.extend(id);
    }
    let again = json!({
        "revision": doc.revision,
        "generated_at": doc.generated_at,
        "grants": accepted.iter().map(|g| json!({
            "id": crate::feed::raw_id(&g.id),
            "principal": uid_json(&g.principal),
            "role": crate::feed::raw_id(&g.role),
            "scope": g.scope.to_string(),
            "not_before": g.not_before,
            "expires_at": g.expires_at,
            "ticket": g.ticket,
        })).collect::<Vec<_>>(),
    });
    let reparsed = crate::feed::parse_document(again.to_string().as_bytes());
    assert!(
        reparsed.is_ok(),
        "a feed of accepted grants must parse again: {reparsed:?}"
    );
    if let Ok(reparsed) = reparsed {
        let index2 = GrantIndex::build(&reparsed, &snapshot.bundle);
        assert!(
            index2.rejected.is_empty(),
            "accepted grants are rejected when written out again: {:?}",
            index2.rejected
        );
        let mut accepted2: Vec<_> = index2.iter().cloned().collect();
        accepted.sort_by(|a, b| a.id.cmp(&b.id));
        accepted2.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(accepted, accepted2, "a feed written out again differs");
        assert_eq!(reparsed.revision, doc.revision);
        assert_eq!(reparsed.generated_at, doc.generated_at);
    }
}

/// The decision request body: parse, build the query against the shipped schema and
/// entities, and decide it.
pub fn request(bytes: &[u8]) {
    let _ = request_decision(bytes);
}

/// As [`request`]; whether the body was allowed, if it was a valid request.
pub fn request_decision(bytes: &[u8]) -> Option<bool> {
    let body = serde_json::from_slice::<Body>(bytes).ok()?;
    decide_body(body, &snapshot(), fixture().now)
}

/// A UID in every form: the JSON forms, and the bytes as the `Type::"id"` text. A
/// parsed UID reads back the same from both forms elevate writes.
pub fn uid(bytes: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
        check_uid(&value);
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        check_uid(&Value::String(text.to_owned()));
    }
}

fn check_uid(value: &Value) {
    let Ok(uid) = parse_uid(value) else {
        return;
    };
    let from_json = parse_uid(&uid_json(&uid));
    assert!(
        from_json.as_ref() == Ok(&uid),
        "`{uid}` does not read back from its JSON form: {from_json:?}"
    );
    let from_text = parse_uid(&Value::String(uid.to_string()));
    assert!(
        from_text.as_ref() == Ok(&uid),
        "`{uid}` does not read back from its text form: {from_text:?}"
    );
}

/// The requests a `routes` input without its own are matched with: one per kind of
/// route in the example table, and some that must not match.
const PROBES: &[&str] = &[
    "GET /api/organizations/acme",
    "PATCH /api/organizations/acme",
    "POST /api/organizations/acme/workspaces",
    "GET /api/workspaces/ws-1",
    "HEAD /api/workspaces/ws-1",
    "POST /api/workspaces/ws-1/payment-methods",
    "GET /api/workspaces/ws-1/projects/checkout",
    "DELETE /api/workspaces/ws-1/projects/checkout/",
    "GET /api/workspaces/ws%2F1",
    "GET /",
    "GET //x/../y",
];

/// The route table: parse it against the shipped schema, then match requests and
/// build the decision body and query each match makes. The input is the TOML text,
/// optionally followed by [`ROUTES_SEPARATOR`] and one `METHOD /path?query` a line.
pub fn routes(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let (table_text, requests) = match text.split_once(ROUTES_SEPARATOR) {
        Some((table, requests)) => (table, Some(requests)),
        None => (text, None),
    };
    let snapshot = snapshot();
    let Ok(table) = RouteTable::parse(table_text, snapshot.bundle.schema.as_ref()) else {
        return;
    };
    let lines: Vec<&str> = match requests {
        Some(requests) => requests.lines().collect(),
        None => PROBES.to_vec(),
    };
    let principal =
        EntityUid::from_type_name_and_id(user_type(), cedar_policy::EntityId::new("alice"));
    let headers = HeaderMap::new();
    for line in lines {
        let (method, target) = line.split_once(' ').unwrap_or((line, "/"));
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let Ok(segments) = origin::parse_path(path) else {
            continue;
        };
        let Some(matched) = table.find(method, &segments) else {
            continue;
        };
        let chain = matched.chain();
        assert_eq!(
            chain.first().map(|link| &link.uid),
            Some(&matched.resource()),
            "a route's chain starts at its resource"
        );
        assert!(
            chain.last().is_some_and(|link| link.parent.is_none()),
            "the last link of a chain has no parent"
        );
        let _ = matched.params().count();
        let original = origin::Original {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
        };
        let body = crate::gateway::body_for(
            &matched,
            &principal,
            &original,
            None,
            &headers,
            &table,
            &snapshot.store,
        );
        let _ = decide_body(body, &snapshot, fixture().now);
    }
}

#[expect(
    clippy::expect_used,
    reason = "`User` is a constant, valid Cedar type name"
)]
fn user_type() -> cedar_policy::EntityTypeName {
    "User".parse().expect("`User` is a type name")
}

/// The workflow's hash-chained event log (the audit trail `elevate audit verify`
/// reads): parse, check the chain, and check that a repaired tail reads back whole.
pub fn eventlog(bytes: &[u8]) {
    crate::eventlog::fuzz_read(bytes);
    if let Ok(parsed) = crate::eventlog::parse(bytes) {
        let mut seq = 0;
        for event in &parsed.events {
            seq += 1;
            assert_eq!(event.seq, seq, "a sound log's events are numbered from 1");
        }
        assert!(parsed.valid_len <= bytes.len() as u64);
    }
}

/// Headers from bytes: one `name: value` a line; lines that are not a header are
/// left out, as a gateway would never send them.
pub fn header_map(bytes: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in bytes.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default();
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        {
            headers.append(name, value);
        }
    }
    headers
}

/// The forward-auth headers: the bytes as the headers of a `/v1/forward-auth`
/// request, through the whole decision path (original request, principal, route,
/// client IP, body, engine, answer) in process.
pub fn forward_auth(bytes: &[u8]) {
    let _ = forward_auth_status(bytes);
}

/// As [`forward_auth`]; the answer's status, if the headers describe a request.
pub fn forward_auth_status(bytes: &[u8]) -> Option<u16> {
    let headers = header_map(bytes);
    let original = origin::parse_original(&headers).ok()?;
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let response = fixture()
        .app
        .authorize_original(&original, &headers, Some(peer));
    let status = response.status().as_u16();
    check_gateway_answer(response);
    Some(status)
}

/// A gateway answer: 200 only for an Allow resting on a policy, with the principal
/// header; otherwise one of the statuses a gateway acts on.
fn check_gateway_answer(response: Response<Full<Bytes>>) {
    let (parts, body) = response.into_parts();
    let status = parts.status;
    assert!(
        [
            StatusCode::OK,
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN
        ]
        .contains(&status),
        "unexpected gateway status {status}"
    );
    let body = ready(body.collect())
        .and_then(|c| c.ok())
        .map(|c| c.to_bytes());
    let Some(body) = body else {
        unreachable_body();
        return;
    };
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status == StatusCode::OK {
        assert_eq!(value.get("decision"), Some(&json!("Allow")));
        assert!(
            value
                .pointer("/diagnostics/reason")
                .and_then(Value::as_array)
                .is_some_and(|r| !r.is_empty()),
            "an allowed gateway request names no reason: {value}"
        );
        assert!(
            parts.headers.contains_key(crate::http::PRINCIPAL_HEADER),
            "an allow does not tell the gateway who was allowed"
        );
    } else {
        assert!(
            value.get("decision").is_none_or(|d| d == "Deny"),
            "a refused gateway request says Allow: {value}"
        );
        assert!(
            !parts.headers.contains_key(crate::http::PRINCIPAL_HEADER),
            "a refusal names a principal for upstream"
        );
    }
}

#[expect(
    clippy::panic,
    reason = "an in-memory body that is not ready at once is a bug in the gateway code"
)]
fn unreachable_body() {
    panic!("a gateway answer body was not ready in memory");
}

/// The signed-feed envelope: open it with and without trust and check what comes
/// out; and any bytes, sealed by a trusted key, open to themselves.
pub fn signed_feed(bytes: &[u8]) {
    let fixture = fixture();
    if let Ok(document) = crate::signing::open(bytes, Some(&fixture.trust))
        && let Ok(doc) = crate::feed::parse_document(&document)
    {
        let _ =
            crate::signing::check_document(&fixture.trust, &doc, Some(&fixture.held), fixture.now);
    }
    if let Ok(document) = crate::signing::open(bytes, None) {
        feed(&document);
    }
    let sealed = crate::signing::seal(bytes, std::slice::from_ref(&fixture.signer));
    let opened = crate::signing::open(&sealed, Some(&fixture.trust));
    assert!(
        opened.as_deref().is_ok_and(|d| d == bytes),
        "a sealed document does not open to itself: {opened:?}"
    );
}

/// Envoy's gRPC `CheckRequest` as it arrives on the wire: decode, then decide
/// through the same path as forward-auth and translate the answer.
pub fn envoy_check(bytes: &[u8]) {
    let _ = envoy_check_code(bytes);
}

/// As [`envoy_check`]; the answer's `google.rpc.Code`, if the bytes decode.
pub fn envoy_check_code(bytes: &[u8]) -> Option<i32> {
    let request = crate::envoy::proto::CheckRequest::decode(bytes).ok()?;
    let Some(response) = ready(crate::envoy::check(&fixture().app, request)) else {
        unreachable_body();
        return None;
    };
    let code = response.status.as_ref().map(|s| s.code);
    match &response.http_response {
        Some(crate::envoy::proto::HttpResponse::Ok(ok)) => {
            assert_eq!(code, Some(0), "an ok response must carry code OK");
            assert!(
                ok.headers.iter().any(|h| h
                    .header
                    .as_ref()
                    .is_some_and(|h| h.key == crate::http::PRINCIPAL_HEADER)),
                "an allow does not tell Envoy who was allowed"
            );
        }
        Some(crate::envoy::proto::HttpResponse::Denied(denied)) => {
            assert!(
                code.is_some_and(|c| c != 0),
                "a denied response carries code OK"
            );
            let status = denied.status.as_ref().map(|s| s.code);
            assert!(
                matches!(status, Some(400 | 401 | 403 | 404 | 500 | 503)),
                "Envoy refuses HTTP status {status:?}"
            );
        }
        None => unreachable_body(),
    }
    code
}

/// The AuthZEN evaluation and evaluations bodies: parse, then decide each body.
pub fn authzen(bytes: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return;
    };
    let snapshot = snapshot();
    let now = fixture().now;
    if let Ok(body) = crate::gateway::authzen::parse_evaluation(&value) {
        let _ = decide_body(body, &snapshot, now);
    }
    match crate::gateway::authzen::parse_evaluations(&value) {
        Ok(crate::gateway::authzen::Evaluations::Single(body)) => {
            let _ = decide_body(*body, &snapshot, now);
        }
        Ok(crate::gateway::authzen::Evaluations::Batch { items, .. }) => {
            for body in items.into_iter().flatten() {
                let _ = decide_body(body, &snapshot, now);
            }
        }
        Err(_) => {}
    }
}

/// The workflow API's tokens file: parse and look tokens up.
pub fn tokens(bytes: &[u8]) {
    let Ok(table) = crate::tokens::TokenTable::parse(bytes) else {
        return;
    };
    // The bytes as a token: the lookup must survive any text, and an empty table
    // authenticates nobody.
    let token = String::from_utf8_lossy(bytes);
    for token in [token.as_ref(), "", "Bearer x"] {
        if table.lookup(token).is_some() {
            assert!(
                !table.is_empty(),
                "an empty token table authenticated a token"
            );
        }
    }
}

/// A policy test file (`policies/tests/*.toml`): parse, and run its cases against the
/// shipped policies.
pub fn policy_test(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let path = Path::new("fuzz.toml");
    let Ok(file) = crate::policytest::parse_file(path, text) else {
        return;
    };
    let fixture = fixture();
    if let Ok(report) = crate::policytest::run(
        &fixture.raw,
        Validation::Strict,
        std::slice::from_ref(&file),
        None,
    ) {
        assert!(report.passed() + report.failed() <= file.cases.len());
    }
}

/// A target body.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/` and the corpus test know them.
pub const TARGETS: &[(&str, Target)] = &[
    ("feed", feed),
    ("request", request),
    ("uid", uid),
    ("routes", routes),
    ("eventlog", eventlog),
    ("forward_auth", forward_auth),
    ("signed_feed", signed_feed),
    ("envoy_check", envoy_check),
    ("authzen", authzen),
    ("tokens", tokens),
    ("policy_test", policy_test),
];
