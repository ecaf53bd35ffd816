//! The workflow HTTP API (`serve --workflow`) end to end: the real server in process
//! on `127.0.0.1:0`, its event log and feed file on disk, a stepped clock, and a
//! reqwest client. Bearer tokens and their hot reload; the status and `kind` of every
//! refusal; creation and queries; the audit chain; the grant feed (ETags, long-polls,
//! the feed file) and the sidecar of the same process following it at once; lapse and
//! expiry exactly at their boundaries; `/v1/status` and `/metrics`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::*;

// ------------------------------------------------------------------ tokens

const ALICE: &str = "tok-alice-3c1f9e27b4d8";
const BOB: &str = "tok-bob-8e02d6a1f5c3";
const CAROL: &str = "tok-carol-5b7a0c9d2e41";
const DAVE: &str = "tok-dave-1d4e6f80a2b7";
const ERIN: &str = "tok-erin-9f3c2b1a0e6d";
const FRANK: &str = "tok-frank-6a5b4c3d2e1f";
const KEY_WS1: &str = "tok-bb-ws1-0f1e2d3c4b5a";
/// Added to the tokens file while the server runs.
const LATECOMER: &str = "tok-latecomer-77c1a9e3d05b";
/// In no tokens file ever.
const STRANGER: &str = "tok-stranger-2e9d8c7b6a50";

const TOKENS: &[(&str, &str)] = &[
    (ALICE, r#"User::"alice""#),
    (BOB, r#"User::"bob""#),
    (CAROL, r#"User::"carol""#),
    (DAVE, r#"User::"dave""#),
    (ERIN, r#"User::"erin""#),
    (FRANK, r#"User::"frank""#),
    (KEY_WS1, r#"ApiKey::"bb-ws1""#),
];

/// Every token any test sends: none may ever come back in a response.
const SECRETS: &[&str] = &[
    ALICE, BOB, CAROL, DAVE, ERIN, FRANK, KEY_WS1, LATECOMER, STRANGER,
];

// ------------------------------------------------------------------ server

/// A whole second, so every instant the workflow derives prints compactly.
fn t0() -> Timestamp {
    "2030-03-04T09:00:00Z".parse().unwrap()
}

fn at(offset: SignedDuration) -> Timestamp {
    t0() + offset
}

fn secs(n: i64) -> SignedDuration {
    SignedDuration::from_secs(n)
}

const TTL: SignedDuration = SignedDuration::from_hours(1);

/// A workflow server at [`t0`], pending requests lapsing after [`TTL`].
async fn server() -> (TestServer, SteppedClock) {
    let clock = SteppedClock::at(t0());
    let server = TestServer::start_workflow(&clock, TTL, TOKENS).await;
    (server, clock)
}

// ------------------------------------------------------------------ client

/// One response, read whole.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts the status; returns the JSON body.
    #[track_caller]
    fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text());
        self.json()
    }

    /// Asserts an error answer: the status, a JSON content type, and a body of exactly
    /// `error` (a sentence) and `kind`. Returns the sentence.
    #[track_caller]
    fn err(&self, status: u16, kind: &str) -> String {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.text()
        );
        let body = self.json();
        let map = body.as_object().unwrap();
        assert_eq!(map.len(), 2, "an error is `error` and `kind` only: {body}");
        assert_eq!(body["kind"], kind, "{body}");
        let sentence = body["error"].as_str().unwrap().to_owned();
        assert!(!sentence.is_empty(), "{body}");
        sentence
    }
}

/// Sends, reads the whole answer, and checks that no token leaked into it.
async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    let text = String::from_utf8_lossy(&body);
    for secret in SECRETS {
        assert!(
            !text.contains(secret),
            "a bearer token came back in a {status} body: {text}"
        );
        for (name, value) in &headers {
            assert!(
                !String::from_utf8_lossy(value.as_bytes()).contains(secret),
                "a bearer token came back in the `{name}` header"
            );
        }
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn request(
    s: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> reqwest::RequestBuilder {
    let builder = s.client.request(method, s.url(path));
    match token {
        Some(token) => builder.bearer_auth(token),
        None => builder,
    }
}

async fn get(s: &TestServer, token: &str, path: &str) -> Reply {
    send(request(s, Method::GET, path, Some(token))).await
}

async fn post(s: &TestServer, token: &str, path: &str, body: &Value) -> Reply {
    send(request(s, Method::POST, path, Some(token)).json(body)).await
}

async fn post_raw(s: &TestServer, token: &str, path: &str, body: &'static str) -> Reply {
    send(
        request(s, Method::POST, path, Some(token))
            .header("content-type", "application/json")
            .body(body),
    )
    .await
}

/// A FinOpsManager request on a workspace.
fn finops(workspace: &str, duration: &str) -> Value {
    json!({
        "role": "FinOpsManager",
        "scope": uid("Workspace", workspace),
        "duration": duration,
        "reason": "month-end invoices",
    })
}

/// Creates a request that must be accepted; returns the elevation.
async fn create(s: &TestServer, token: &str, body: &Value) -> Value {
    post(s, token, "/v1/elevations", body).await.ok(201)
}

/// POSTs a command with an empty body, `/v1/elevations/{id}/{command}`.
async fn command(s: &TestServer, token: &str, id: &str, command: &str) -> Reply {
    post_raw(s, token, &format!("/v1/elevations/{id}/{command}"), "").await
}

async fn elevation(s: &TestServer, id: &str) -> Value {
    get(s, ALICE, &format!("/v1/elevations/{id}")).await.ok(200)
}

async fn state_of(s: &TestServer, id: &str) -> String {
    elevation(s, id).await["state"].as_str().unwrap().to_owned()
}

/// The ids of `GET /v1/elevations{query}`, in order.
async fn listed(s: &TestServer, query: &str) -> Vec<String> {
    let list = get(s, BOB, &format!("/v1/elevations{query}")).await.ok(200);
    list["elevations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn audit(s: &TestServer, query: &str) -> Value {
    get(s, CAROL, &format!("/v1/audit{query}")).await.ok(200)
}

fn events(page: &Value) -> &Vec<Value> {
    page["events"].as_array().unwrap()
}

async fn last_seq(s: &TestServer) -> u64 {
    audit(s, "").await["last_seq"].as_u64().unwrap()
}

/// `GET /v1/grants` with no token.
async fn feed(s: &TestServer) -> Reply {
    send(request(s, Method::GET, "/v1/grants", None)).await
}

/// `GET /v1/grants` with `If-None-Match: etag`.
async fn feed_if_none_match(s: &TestServer, query: &str, etag: &str) -> Reply {
    send(request(s, Method::GET, &format!("/v1/grants{query}"), None).header("if-none-match", etag))
        .await
}

/// The ETag the feed must carry now, from the audit log: `"<seq>-<hash>"`, the last
/// event's seq and the first 16 hex digits of its chained hash (of [`GENESIS`] for an
/// empty log), so that it names the history and not just its length.
///
/// [`GENESIS`]: elevate::eventlog::GENESIS
async fn expected_etag(s: &TestServer) -> String {
    let page = audit(s, "").await;
    let hash = events(&page).last().map_or_else(
        || elevate::eventlog::GENESIS.to_owned(),
        |e| e["hash"].as_str().unwrap().to_owned(),
    );
    assert_eq!(hash.len(), 64, "{hash}");
    format!("\"{}-{}\"", page["last_seq"], &hash[..16])
}

/// The current feed; asserts the feed file holds exactly the same bytes, and the ETag
/// names the document's revision and the history's last hash. Returns the document
/// and its ETag.
async fn feed_checked(s: &TestServer) -> (Value, String) {
    let reply = feed(s).await;
    let doc = reply.ok(200);
    let file = std::fs::read(s.layout.feed_file()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&file),
        reply.text(),
        "the feed file differs from GET /v1/grants"
    );
    let etag = reply.header("etag").unwrap().to_owned();
    let revision = doc["revision"].as_str().unwrap();
    assert!(
        etag.starts_with(&format!("\"{revision}-")),
        "{etag} for {revision}"
    );
    assert_eq!(etag, expected_etag(s).await);
    (doc, etag)
}

fn grant_ids(doc: &Value) -> Vec<String> {
    doc["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `User::"alice"` creating a payment method in ws-1: the call FinOpsManager elevates.
async fn alice_creates_payment_method(s: &TestServer) -> Value {
    s.decide(
        &user("alice"),
        &action("createPaymentMethod"),
        &uid("Workspace", "ws-1"),
    )
    .await
}

/// Polls `probe` until it holds; fails after `timeout`.
async fn eventually(what: &str, timeout: Duration, mut probe: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if probe().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the ticker has recorded `kind` (`lapsed`, `expired`) for `id`; returns
/// the event.
async fn ticked(s: &TestServer, id: &str, kind: &str) -> Value {
    let find = async || {
        events(&audit(s, "").await)
            .iter()
            .find(|e| e["request_id"] == id && e["kind"] == kind)
            .cloned()
    };
    eventually(
        &format!("the ticker records `{kind}` for {id}"),
        RELOAD_TIMEOUT,
        async || find().await.is_some(),
    )
    .await;
    find().await.unwrap()
}

// ------------------------------------------------------------ authentication

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_known_bearer_token_are_401_and_never_echo_it() {
    let (s, _clock) = server().await;
    let routes = [
        (Method::GET, "/v1/whoami"),
        (Method::GET, "/v1/elevations"),
        (Method::POST, "/v1/elevations"),
        (Method::GET, "/v1/elevations/r-1"),
        (Method::POST, "/v1/elevations/r-1/approve"),
        (Method::POST, "/v1/elevations/r-1/extend"),
        (Method::GET, "/v1/audit"),
        // Authentication comes before routing the method: nothing is told to a stranger.
        (Method::DELETE, "/v1/elevations"),
    ];
    for (method, path) in &routes {
        let missing = send(request(&s, method.clone(), path, None)).await;
        let sentence = missing.err(401, "unauthenticated");
        assert!(sentence.contains("Bearer"), "{method} {path}: {sentence}");
        let challenge = missing.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
    }
    let malformed = [
        "Basic x".to_owned(),
        "Basic YWxpY2U6c2VjcmV0".to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        ALICE.to_owned(),
        format!("Token {ALICE}"),
        format!("Bearer {ALICE} {BOB}"),
    ];
    for header in &malformed {
        let reply = send(
            request(&s, Method::GET, "/v1/whoami", None).header("authorization", header.as_str()),
        )
        .await;
        let sentence = reply.err(401, "unauthenticated");
        assert!(
            sentence.contains("not `Bearer <token>`"),
            "{header}: {sentence}"
        );
        assert!(
            reply
                .header("www-authenticate")
                .unwrap()
                .starts_with("Bearer")
        );
    }
    for unknown in [
        STRANGER.to_owned(),
        format!("{ALICE}x"),
        ALICE[1..].to_owned(),
    ] {
        for (method, path) in &routes {
            let reply = send(request(&s, method.clone(), path, Some(&unknown))).await;
            let sentence = reply.err(401, "unauthenticated");
            assert!(sentence.contains("not known"), "{sentence}");
            assert!(!reply.text().contains(&unknown), "{}", reply.text());
        }
    }
    // Refusals record nothing.
    assert_eq!(last_seq(&s).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_names_the_principal_of_each_token_and_the_sidecar_routes_need_none() {
    let (s, _clock) = server().await;
    for (token, principal) in TOKENS {
        let me = get(&s, token, "/v1/whoami").await.ok(200);
        assert_eq!(me, json!({ "principal": principal }));
    }
    // The scheme is case-insensitive (RFC 7235).
    let reply = send(
        request(&s, Method::GET, "/v1/whoami", None)
            .header("authorization", format!("bearer {BOB}")),
    )
    .await;
    assert_eq!(reply.ok(200)["principal"], user("bob"));

    // The decision API, health, status, metrics and the feed take no token.
    let answer = alice_creates_payment_method(&s).await;
    assert_answer(&answer, "Deny", &[], &[]);
    for path in [
        "/healthz",
        "/readyz",
        "/v1/status",
        "/metrics",
        "/v1/grants",
    ] {
        let reply = send(request(&s, Method::GET, path, None)).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tokens_file_is_hot_reloaded_through_the_running_server() {
    let (s, _clock) = server().await;
    let tokens_status = async || s.status().await["workflow"]["tokens"].clone();
    assert_eq!(tokens_status().await["entries"], TOKENS.len());
    get(&s, LATECOMER, "/v1/whoami")
        .await
        .err(401, "unauthenticated");

    // Added: it authenticates within the deadline, as the principal the file says.
    let mut tokens = TOKENS.to_vec();
    tokens.push((LATECOMER, r#"User::"dave""#));
    write_tokens(&s.layout.tokens_file(), &tokens);
    eventually("the new token authenticates", RELOAD_TIMEOUT, async || {
        get(&s, LATECOMER, "/v1/whoami").await.status == 200
    })
    .await;
    assert_eq!(
        get(&s, LATECOMER, "/v1/whoami").await.ok(200)["principal"],
        user("dave")
    );
    let status = tokens_status().await;
    assert_eq!(status["entries"], tokens.len(), "{status}");
    assert_eq!(status["last_error"], Value::Null, "{status}");
    // And it can act: a request made with it is dave's.
    let made = create(&s, LATECOMER, &finops("ws-2", "1h")).await;
    assert_eq!(made["principal"], user("dave"));

    // Removed: alice's token stops working; the others still work.
    tokens.retain(|(token, _)| *token != ALICE);
    write_tokens(&s.layout.tokens_file(), &tokens);
    eventually("the removed token is refused", RELOAD_TIMEOUT, async || {
        get(&s, ALICE, "/v1/whoami").await.status == 401
    })
    .await;
    get(&s, ALICE, "/v1/elevations")
        .await
        .err(401, "unauthenticated");
    assert_eq!(
        get(&s, BOB, "/v1/whoami").await.ok(200)["principal"],
        user("bob")
    );
    assert_eq!(
        get(&s, LATECOMER, "/v1/whoami").await.ok(200)["principal"],
        user("dave")
    );
    assert_eq!(tokens_status().await["entries"], tokens.len());

    // A broken file keeps the last good table and says why in /v1/status.
    write_atomic(&s.layout.tokens_file(), "[{\"sha256\": \"not hex\"");
    eventually(
        "the bad tokens file is reported",
        RELOAD_TIMEOUT,
        async || tokens_status().await["last_error"].is_string(),
    )
    .await;
    assert_eq!(
        get(&s, BOB, "/v1/whoami").await.ok(200)["principal"],
        user("bob")
    );
    get(&s, ALICE, "/v1/whoami")
        .await
        .err(401, "unauthenticated");
    assert_eq!(tokens_status().await["entries"], tokens.len());
}

// ------------------------------------------------------------------ refusals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_refusals_are_403_and_name_the_forbids() {
    let (s, _clock) = server().await;
    let r1 = create(&s, ALICE, &finops("ws-1", "2h")).await;
    assert_eq!(r1["id"], "r-1");

    let own = command(&s, ALICE, "r-1", "approve").await;
    let sentence = own.err(403, "forbidden");
    assert!(sentence.contains("`no-self-approval`"), "{sentence}");

    // dave manages ws-2 and is no FinOps approver: nothing permits him.
    let stranger = command(&s, DAVE, "r-1", "approve").await;
    let sentence = stranger.err(403, "forbidden");
    assert!(sentence.contains("no policy permits it"), "{sentence}");
    let sentence = command(&s, DAVE, "r-1", "deny").await.err(403, "forbidden");
    assert!(sentence.contains("no policy permits it"), "{sentence}");
    // Only the requester cancels.
    let sentence = command(&s, BOB, "r-1", "cancel")
        .await
        .err(403, "forbidden");
    assert!(sentence.contains("no policy permits it"), "{sentence}");

    // Two approvals needed, from two people.
    let admin = json!({
        "role": "OrganizationAdmin",
        "scope": uid("Workspace", "ws-1"),
        "duration": "1h",
        "reason": "incident 42",
    });
    create(&s, ALICE, &admin).await;
    let first = command(&s, CAROL, "r-2", "approve").await.ok(200);
    assert_eq!(first["state"], "pending");
    assert_eq!(first["approvals"].as_array().unwrap().len(), 1);
    let again = command(&s, CAROL, "r-2", "approve").await;
    let sentence = again.err(403, "forbidden");
    assert!(sentence.contains("`no-repeat-approval`"), "{sentence}");
    let second = command(&s, FRANK, "r-2", "approve").await.ok(200);
    assert_eq!(second["state"], "approved");

    // A key acting for alice: alice may not approve it either.
    let for_alice = json!({
        "role": "FinOpsManager",
        "scope": uid("Workspace", "ws-1"),
        "duration_seconds": 1800,
        "reason": "pipeline run 7",
        "on_behalf_of": user("alice"),
    });
    let r3 = create(&s, KEY_WS1, &for_alice).await;
    assert_eq!(r3["principal"], api_key("bb-ws1"));
    let sentence = command(&s, ALICE, "r-3", "approve")
        .await
        .err(403, "forbidden");
    assert!(sentence.contains("`no-self-approval`"), "{sentence}");

    // Guardrails and the role's maximum apply to asking too.
    let sentence = post(&s, ERIN, "/v1/elevations", &finops("ws-1", "1h"))
        .await
        .err(403, "forbidden");
    assert!(sentence.contains("`suspended-principal`"), "{sentence}");
    let sentence = post(&s, KEY_WS1, "/v1/elevations", &finops("ws-2", "1h"))
        .await
        .err(403, "forbidden");
    assert!(
        sentence.contains("`apikey-outside-own-workspace`"),
        "{sentence}"
    );
    let sentence = post(&s, ALICE, "/v1/elevations", &finops("ws-1", "5h"))
        .await
        .err(403, "forbidden");
    assert!(
        sentence.contains("`duration-over-role-maximum`"),
        "{sentence}"
    );

    // Only the grantee asks for more time.
    let more = json!({"duration": "30m", "reason": "not done"});
    let sentence = post(&s, CAROL, "/v1/elevations/r-2/extend", &more)
        .await
        .err(403, "forbidden");
    assert!(sentence.contains("belongs to"), "{sentence}");

    // 1 requested, 2 requested, 3 approval, 4 approved, 5 requested: refusals add nothing.
    assert_eq!(last_seq(&s).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_on_a_request_in_the_wrong_state_are_409() {
    let (s, _clock) = server().await;
    create(&s, ALICE, &finops("ws-1", "2h")).await;
    command(&s, BOB, "r-1", "approve").await.ok(200);
    for (token, verb) in [(CAROL, "approve"), (CAROL, "deny"), (ALICE, "cancel")] {
        let sentence = command(&s, token, "r-1", verb).await.err(409, "conflict");
        assert!(
            sentence.contains(&format!("cannot {verb} request `r-1`: it is approved")),
            "{sentence}"
        );
    }

    create(&s, ALICE, &finops("ws-1", "2h")).await;
    command(&s, BOB, "r-2", "deny").await.ok(200);
    for (token, verb) in [
        (BOB, "approve"),
        (BOB, "deny"),
        (ALICE, "cancel"),
        (CAROL, "revoke"),
        (ALICE, "relinquish"),
    ] {
        let sentence = command(&s, token, "r-2", verb).await.err(409, "conflict");
        assert!(sentence.contains("it is denied"), "{verb}: {sentence}");
    }

    create(&s, ALICE, &finops("ws-1", "2h")).await;
    command(&s, ALICE, "r-3", "cancel").await.ok(200);
    let sentence = command(&s, BOB, "r-3", "approve")
        .await
        .err(409, "conflict");
    assert!(sentence.contains("it is cancelled"), "{sentence}");

    // A pending request has no grant to end or extend.
    create(&s, ALICE, &finops("ws-1", "2h")).await;
    let sentence = command(&s, CAROL, "r-4", "revoke")
        .await
        .err(409, "conflict");
    assert!(sentence.contains("it is pending"), "{sentence}");
    let sentence = command(&s, ALICE, "r-4", "relinquish")
        .await
        .err(409, "conflict");
    assert!(sentence.contains("it is pending"), "{sentence}");
    let more = json!({"duration": "1h", "reason": "more"});
    post(&s, ALICE, "/v1/elevations/r-4/extend", &more)
        .await
        .err(409, "conflict");

    // One extension at a time.
    let extension = post(&s, ALICE, "/v1/elevations/r-1/extend", &more)
        .await
        .ok(201);
    assert_eq!(extension["id"], "r-5");
    assert_eq!(extension["extends"], "r-1");
    let sentence = post(&s, ALICE, "/v1/elevations/r-1/extend", &more)
        .await
        .err(409, "conflict");
    assert!(
        sentence.contains("already being extended by `r-5`"),
        "{sentence}"
    );
    assert_eq!(elevation(&s, "r-1").await["extended_by"], json!(["r-5"]));

    // Revoked: its pending extension can no longer follow on, and it cannot end twice.
    let revoked = command(&s, CAROL, "r-1", "revoke").await.ok(200);
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(state_of(&s, "r-5").await, "lapsed");
    let sentence = command(&s, ALICE, "r-1", "relinquish")
        .await
        .err(409, "conflict");
    assert!(sentence.contains("it is revoked"), "{sentence}");
    command(&s, BOB, "r-5", "approve")
        .await
        .err(409, "conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_requests_and_commands_are_404() {
    let (s, _clock) = server().await;
    let sentence = get(&s, ALICE, "/v1/elevations/r-99")
        .await
        .err(404, "not_found");
    assert!(sentence.contains("`r-99`"), "{sentence}");
    for verb in ["approve", "deny", "cancel", "revoke", "relinquish"] {
        let sentence = command(&s, BOB, "r-99", verb).await.err(404, "not_found");
        assert!(sentence.contains("`r-99`"), "{sentence}");
    }
    let more = json!({"duration": "1h", "reason": "more"});
    post(&s, ALICE, "/v1/elevations/r-99/extend", &more)
        .await
        .err(404, "not_found");

    create(&s, ALICE, &finops("ws-1", "1h")).await;
    // A pending request has no grant yet: `g-1` names nothing.
    get(&s, ALICE, "/v1/elevations/g-1")
        .await
        .err(404, "not_found");
    let sentence = command(&s, BOB, "r-1", "frobnicate")
        .await
        .err(404, "not_found");
    assert!(sentence.contains("frobnicate"), "{sentence}");
    for path in [
        "/v1/elevations/",
        "/v1/elevations/r-1/approve/x",
        "/v1/nothing",
    ] {
        get(&s, ALICE, path).await.err(404, "not_found");
    }
    assert_eq!(state_of(&s, "r-1").await, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_are_422_and_record_nothing() {
    let (s, _clock) = server().await;
    let base = finops("ws-1", "2h");
    let with = |changes: Value| {
        let mut body = base.clone();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        body
    };
    let long = "x".repeat(4097);
    let cases: Vec<(Value, &str)> = vec![
        (with(json!({"role": "Superuser"})), "`Superuser`"),
        (
            with(json!({"role": "OrganizationUser"})),
            "cannot be scoped to `Workspace::\"ws-1\"`",
        ),
        (
            with(json!({"scope": uid("Project", "checkout")})),
            "cannot be scoped",
        ),
        (
            with(json!({"scope": uid("Workspace", "ws-9")})),
            "not in the entity data",
        ),
        (
            with(json!({"scope": {"type": "Workspace", "id": "ws-9"}})),
            "not in the entity data",
        ),
        (with(json!({"scope": "ws-1"})), "`scope`"),
        (with(json!({"scope": {"type": "Workspace"}})), "`scope`"),
        (with(json!({"scope": 7})), "`scope`"),
        (
            with(json!({"duration": null, "duration_seconds": 0})),
            "positive whole number of seconds",
        ),
        (
            with(json!({"duration": null, "duration_seconds": -60})),
            "positive whole number of seconds",
        ),
        (with(json!({"duration": "0s"})), "positive whole number"),
        (with(json!({"duration": "-1h"})), "positive whole number"),
        (with(json!({"duration": "2.5s"})), "positive whole number"),
        (with(json!({"duration": "PT0.5S"})), "positive whole number"),
        (with(json!({"duration": "soon"})), "`soon`"),
        (with(json!({"duration_seconds": 7200})), "not both"),
        (with(json!({"duration": null})), "missing `duration`"),
        (
            with(json!({"reason": long})),
            "`reason` is longer than 4096 bytes",
        ),
        (with(json!({"reason": "  "})), "`reason` is empty"),
        (with(json!({"ticket": long})), "`ticket` is longer than"),
        (
            with(json!({"on_behalf_of": long})),
            "`on_behalf_of` is longer than",
        ),
    ];
    for (body, expected) in &cases {
        let sentence = post(&s, ALICE, "/v1/elevations", body)
            .await
            .err(422, "invalid");
        assert!(sentence.contains(expected), "{body}: {sentence}");
    }

    let queries = [
        (
            "/v1/elevations?colour=blue",
            "unknown query parameter `colour`",
        ),
        ("/v1/elevations?state=bogus", "unknown state `bogus`"),
        ("/v1/elevations?state=Pending", "unknown state"),
        ("/v1/elevations?principal=alice", "`principal`"),
        ("/v1/audit?after=x", "`after`"),
        ("/v1/audit?after=-1", "`after`"),
        ("/v1/audit?limit=0", "`limit`"),
        ("/v1/audit?limit=10001", "`limit`"),
    ];
    for (path, expected) in queries {
        let sentence = get(&s, ALICE, path).await.err(422, "invalid");
        assert!(sentence.contains(expected), "{path}: {sentence}");
    }
    for path in [
        "/v1/grants?wait=301",
        "/v1/grants?wait=soon",
        "/v1/grants?since=3",
    ] {
        send(request(&s, Method::GET, path, None))
            .await
            .err(422, "invalid");
    }

    // Commands' own text and durations.
    create(&s, ALICE, &base).await;
    let comment = json!({ "comment": long });
    let sentence = post(&s, BOB, "/v1/elevations/r-1/approve", &comment)
        .await
        .err(422, "invalid");
    assert!(sentence.contains("`comment` is longer than"), "{sentence}");
    command(&s, BOB, "r-1", "approve").await.ok(200);
    for more in [
        json!({"duration_seconds": 0, "reason": "more"}),
        json!({"duration": "1h", "duration_seconds": 3600, "reason": "more"}),
        json!({"reason": "more"}),
        json!({"duration": "1h", "reason": ""}),
    ] {
        post(&s, ALICE, "/v1/elevations/r-1/extend", &more)
            .await
            .err(422, "invalid");
    }
    // Only the create and the approval were recorded.
    assert_eq!(last_seq(&s).await, 2);
}

/// The contract puts a bad duration under 422 and keeps 400 for malformed JSON and
/// unknown fields. `{"duration_seconds": 1.5}` is well-formed JSON with known fields
/// and a fractional duration, like `"duration": "2.5s"` (422 above); it must be
/// refused the same way, and not be told its body "is not valid JSON".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fractional_duration_seconds_is_422_like_any_other_bad_duration() {
    let (s, _clock) = server().await;
    let body = json!({
        "role": "FinOpsManager",
        "scope": uid("Workspace", "ws-1"),
        "duration_seconds": 1.5,
        "reason": "month-end invoices",
    });
    let reply = post(&s, ALICE, "/v1/elevations", &body).await;
    let sentence = reply.err(422, "invalid");
    assert!(!sentence.contains("not valid JSON"), "{sentence}");
    assert_eq!(last_seq(&s).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400_and_oversized_ones_413() {
    let (s, _clock) = server().await;
    for body in [
        "",
        "{\"role\": ",
        "[]",
        "null",
        "{\"role\": 1, \"scope\": \"Workspace::\\\"ws-1\\\"\", \"duration\": \"1h\", \"reason\": \"r\"}",
        "{\"role\": \"FinOpsManager\", \"scope\": \"Workspace::\\\"ws-1\\\"\", \"duration\": \"1h\", \"reason\": \"r\", \"colour\": \"blue\"}",
    ] {
        post_raw(&s, ALICE, "/v1/elevations", body)
            .await
            .err(400, "bad_request");
    }
    // Well-formed JSON with known fields but a missing or unusable value: 422 with a
    // sentence about that field, not "not valid JSON".
    for (body, field) in [
        (
            "{\"role\": \"FinOpsManager\", \"scope\": \"Workspace::\\\"ws-1\\\"\", \"duration\": \"1h\"}",
            "`reason`",
        ),
        (
            "{\"role\": \"FinOpsManager\", \"scope\": \"Workspace::\\\"ws-1\\\"\", \"duration\": \"1h\", \"reason\": \"r\", \"not_before\": \"tomorrow\"}",
            "`not_before`",
        ),
        (
            "{\"role\": \"FinOpsManager\", \"scope\": \"Workspace::\\\"ws-1\\\"\", \"duration\": 7200, \"reason\": \"r\"}",
            "`duration`",
        ),
        (
            "{\"role\": \"FinOpsManager\", \"scope\": \"Workspace::\\\"ws-1\\\"\", \"duration_seconds\": \"7200\", \"reason\": \"r\"}",
            "`duration_seconds`",
        ),
    ] {
        let sentence = post_raw(&s, ALICE, "/v1/elevations", body)
            .await
            .err(422, "invalid");
        assert!(sentence.contains(field), "{sentence}");
    }
    create(&s, ALICE, &finops("ws-1", "1h")).await;
    for body in [
        "{\"comment\": ",
        "{\"comment\": \"ok\", \"extra\": 1}",
        "\"ok\"",
        "null",
    ] {
        post_raw(&s, BOB, "/v1/elevations/r-1/approve", body)
            .await
            .err(400, "bad_request");
    }
    command(&s, BOB, "r-1", "approve").await.ok(200);
    post_raw(
        &s,
        ALICE,
        "/v1/elevations/r-1/extend",
        "{\"duration\": \"1h\", \"reason\": \"r\", \"colour\": \"blue\"}",
    )
    .await
    .err(400, "bad_request");

    let huge = json!({
        "role": "FinOpsManager",
        "scope": uid("Workspace", "ws-1"),
        "duration": "1h",
        "reason": "y".repeat(MAX_BODY + 1),
    });
    let reply = post(&s, ALICE, "/v1/elevations", &huge).await;
    reply.err(413, "too_large");
    assert_eq!(last_seq(&s).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_405_with_allow() {
    let (s, _clock) = server().await;
    create(&s, ALICE, &finops("ws-1", "1h")).await;
    let cases = [
        (Method::DELETE, "/v1/elevations", "GET, POST"),
        (Method::PUT, "/v1/elevations", "GET, POST"),
        (Method::POST, "/v1/elevations/r-1", "GET"),
        (Method::DELETE, "/v1/elevations/r-1", "GET"),
        (Method::GET, "/v1/elevations/r-1/approve", "POST"),
        (Method::PUT, "/v1/elevations/r-1/extend", "POST"),
        (Method::POST, "/v1/whoami", "GET"),
        (Method::POST, "/v1/audit", "GET"),
    ];
    for (method, path, allow) in cases {
        let reply = send(request(&s, method.clone(), path, Some(ALICE))).await;
        let sentence = reply.err(405, "method_not_allowed");
        assert!(sentence.contains(&method.to_string()), "{sentence}");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
    }
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let reply = send(request(&s, method, "/v1/grants", None)).await;
        reply.err(405, "method_not_allowed");
        assert_eq!(reply.header("allow"), Some("GET"));
    }
    assert_eq!(state_of(&s, "r-1").await, "pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_workflow_its_routes_are_404_naming_the_flag() {
    let s = TestServer::start(|_| {}).await;
    let routes = [
        (Method::GET, "/v1/elevations"),
        (Method::POST, "/v1/elevations"),
        (Method::GET, "/v1/elevations/r-1"),
        (Method::POST, "/v1/elevations/r-1/approve"),
        (Method::GET, "/v1/whoami"),
        (Method::GET, "/v1/audit"),
        (Method::GET, "/v1/grants"),
    ];
    for (method, path) in routes {
        for token in [None, Some(ALICE)] {
            let reply = send(request(&s, method.clone(), path, token)).await;
            let sentence = reply.err(404, "not_found");
            assert!(
                sentence.contains("--workflow"),
                "{method} {path}: {sentence}"
            );
            assert!(sentence.contains(path), "{sentence}");
        }
    }
    let status = s.status().await;
    assert_eq!(status["workflow"], Value::Null, "{status}");
}

// ------------------------------------------------------------------ creating

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_201_with_its_location_and_the_contract_fields() {
    let (s, clock) = server().await;
    let mut body = finops("ws-1", "2h");
    body["ticket"] = json!("OPS-1");
    let reply = post(&s, ALICE, "/v1/elevations", &body).await;
    let created = reply.ok(201);
    assert_eq!(reply.header("location"), Some("/v1/elevations/r-1"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let expected = json!({
        "id": "r-1",
        "principal": "User::\"alice\"",
        "role": "FinOpsManager",
        "scope": "Workspace::\"ws-1\"",
        "duration_seconds": 7200,
        "reason": "month-end invoices",
        "ticket": "OPS-1",
        "on_behalf_of": null,
        "not_before": null,
        "extends": null,
        "requested_at": "2030-03-04T09:00:00Z",
        "decide_by": "2030-03-04T10:00:00Z",
        "approvals_required": 1,
        "approvals": [],
        "grant": null,
        "ended": null,
        "extended_by": [],
        "state": "pending",
    });
    assert_eq!(created, expected);
    assert_eq!(elevation(&s, "r-1").await, expected);

    // Every duration form of the contract.
    let forms = [
        (json!({"duration": "PT2H"}), 7200),
        (json!({"duration": "90m"}), 5400),
        (json!({"duration": "1h 30m"}), 5400),
        (json!({"duration": "1.5h"}), 5400),
        (json!({"duration": null, "duration_seconds": 7200}), 7200),
        (json!({"duration": null, "duration_seconds": 1}), 1),
    ];
    for (n, (change, seconds)) in (2..).zip(forms) {
        let mut body = finops("ws-1", "2h");
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let reply = post(&s, ALICE, "/v1/elevations", &body).await;
        let made = reply.ok(201);
        assert_eq!(made["duration_seconds"], seconds, "{change}: {made}");
        assert_eq!(made["id"], format!("r-{n}"));
        assert_eq!(
            reply.header("location"),
            Some(format!("/v1/elevations/r-{n}").as_str())
        );
    }
    // A scope as an object, on_behalf_of and not_before.
    clock.advance(secs(60));
    let later = json!({
        "role": "FinOpsManager",
        "scope": {"type": "Workspace", "id": "ws-1"},
        "duration_seconds": 3600,
        "reason": "for the audit",
        "on_behalf_of": "ticket-bot run 12",
        "not_before": "2030-03-04T12:00:00Z",
    });
    let made = create(&s, ALICE, &later).await;
    assert_eq!(made["id"], "r-8");
    assert_eq!(made["scope"], "Workspace::\"ws-1\"");
    assert_eq!(made["on_behalf_of"], "ticket-bot run 12");
    assert_eq!(made["not_before"], "2030-03-04T12:00:00Z");
    assert_eq!(made["requested_at"], "2030-03-04T09:01:00Z");
    assert_eq!(made["decide_by"], "2030-03-04T10:01:00Z");

    // The approval, the grant and the end, as the contract shows them.
    let comment = json!({"comment": "ok for this month"});
    let approved = post(&s, BOB, "/v1/elevations/r-1/approve", &comment)
        .await
        .ok(200);
    assert_eq!(approved["state"], "approved");
    assert_eq!(
        approved["approvals"],
        json!([{"by": "User::\"bob\"", "at": "2030-03-04T09:01:00Z", "comment": "ok for this month"}])
    );
    assert_eq!(
        approved["grant"],
        json!({"id": "g-1", "not_before": "2030-03-04T09:01:00Z", "expires_at": "2030-03-04T11:01:00Z"})
    );
    let late_start = command(&s, BOB, "r-8", "approve").await.ok(200);
    assert_eq!(
        late_start["grant"],
        json!({"id": "g-8", "not_before": "2030-03-04T12:00:00Z", "expires_at": "2030-03-04T13:00:00Z"})
    );
    let revoked = post(
        &s,
        CAROL,
        "/v1/elevations/r-1/revoke",
        &json!({"comment": "done"}),
    )
    .await
    .ok(200);
    assert_eq!(
        revoked["ended"],
        json!({"state": "revoked", "by": "User::\"carol\"", "at": "2030-03-04T09:01:00Z", "comment": "done"})
    );
    assert_eq!(revoked["state"], "revoked");
    let extension = post(
        &s,
        ALICE,
        "/v1/elevations/r-8/extend",
        &json!({"duration_seconds": 1800, "reason": "overrun", "ticket": "OPS-2"}),
    )
    .await;
    let made = extension.ok(201);
    assert_eq!(extension.header("location"), Some("/v1/elevations/r-9"));
    assert_eq!(made["extends"], "r-8");
    assert_eq!(made["not_before"], "2030-03-04T13:00:00Z");
    assert_eq!(made["ticket"], "OPS-2");
    assert_eq!(made["state"], "pending");
    assert_eq!(elevation(&s, "r-8").await["extended_by"], json!(["r-9"]));
}

// ------------------------------------------------------------------ queries

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_filter_by_state_and_principal_and_a_grant_id_finds_its_request() {
    let (s, _clock) = server().await;
    create(&s, ALICE, &finops("ws-1", "1h")).await;
    command(&s, BOB, "r-1", "approve").await.ok(200);
    create(&s, DAVE, &finops("ws-2", "1h")).await;
    create(&s, ALICE, &finops("ws-1", "1h")).await;
    create(&s, KEY_WS1, &finops("ws-1", "1h")).await;
    create(&s, ALICE, &finops("ws-1", "1h")).await;
    command(&s, CAROL, "r-5", "deny").await.ok(200);

    assert_eq!(listed(&s, "").await, ["r-1", "r-2", "r-3", "r-4", "r-5"]);
    assert_eq!(listed(&s, "?state=pending").await, ["r-2", "r-3", "r-4"]);
    assert_eq!(listed(&s, "?state=approved").await, ["r-1"]);
    assert_eq!(listed(&s, "?state=denied").await, ["r-5"]);
    assert!(listed(&s, "?state=revoked").await.is_empty());
    assert_eq!(
        listed(&s, "?principal=User%3A%3A%22alice%22").await,
        ["r-1", "r-3", "r-5"]
    );
    assert_eq!(
        listed(&s, "?principal=User%3A%3A%22alice%22&state=pending").await,
        ["r-3"]
    );
    assert_eq!(
        listed(&s, "?state=pending&principal=ApiKey%3A%3A%22bb-ws1%22").await,
        ["r-4"]
    );
    assert!(
        listed(&s, "?principal=User%3A%3A%22nobody%22")
            .await
            .is_empty()
    );
    // Every item is a whole elevation with its state.
    let list = get(&s, BOB, "/v1/elevations?state=approved").await.ok(200);
    assert_eq!(list["elevations"][0], elevation(&s, "r-1").await);

    let by_grant = elevation(&s, "g-1").await;
    assert_eq!(by_grant["id"], "r-1");
    assert_eq!(by_grant, elevation(&s, "r-1").await);
    get(&s, ALICE, "/v1/elevations/g-3")
        .await
        .err(404, "not_found");
    // A command reaches the request through its grant id too.
    let revoked = command(&s, CAROL, "g-1", "revoke").await.ok(200);
    assert_eq!(revoked["id"], "r-1");
    assert_eq!(revoked["state"], "revoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_pages_and_its_events_chain() {
    let (s, clock) = server().await;
    create(&s, ALICE, &finops("ws-1", "1h")).await;
    command(&s, BOB, "r-1", "approve").await.ok(200);
    clock.advance(secs(5));
    create(&s, DAVE, &finops("ws-2", "1h")).await;
    command(&s, CAROL, "r-2", "deny").await.ok(200);
    create(&s, ALICE, &finops("ws-1", "1h")).await;
    command(&s, ALICE, "r-3", "cancel").await.ok(200);
    clock.advance(secs(5));
    command(&s, FRANK, "r-1", "revoke").await.ok(200);

    let all = audit(&s, "").await;
    assert_eq!(all["last_seq"], 7);
    let list = events(&all);
    let summary: Vec<(u64, &str, &str, &str)> = list
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["kind"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["request_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "requested", r#"User::"alice""#, "r-1"),
            (2, "approved", r#"User::"bob""#, "r-1"),
            (3, "requested", r#"User::"dave""#, "r-2"),
            (4, "denied", r#"User::"carol""#, "r-2"),
            (5, "requested", r#"User::"alice""#, "r-3"),
            (6, "cancelled", r#"User::"alice""#, "r-3"),
            (7, "revoked", r#"User::"frank""#, "r-1"),
        ]
    );
    for e in list {
        let mut keys: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "actor",
                "data",
                "hash",
                "kind",
                "prev",
                "request_id",
                "seq",
                "time"
            ],
            "{e}"
        );
        assert!(!e["hash"].as_str().unwrap().is_empty(), "{e}");
    }
    assert_eq!(list[0]["time"], "2030-03-04T09:00:00Z");
    assert_eq!(list[2]["time"], "2030-03-04T09:00:05Z");
    assert_eq!(list[6]["time"], "2030-03-04T09:00:10Z");
    assert_eq!(list[0]["data"]["role"], "FinOpsManager");
    assert_eq!(list[1]["data"]["grant_id"], "g-1");
    for pair in list.windows(2) {
        assert_eq!(
            pair[1]["prev"], pair[0]["hash"],
            "chain broken at {}",
            pair[1]
        );
        assert_ne!(pair[1]["hash"], pair[0]["hash"]);
    }

    // Pages of 3 give the same events, and the same last_seq.
    let mut paged = Vec::new();
    for (after, seqs) in [
        (0, vec![1, 2, 3]),
        (3, vec![4, 5, 6]),
        (6, vec![7]),
        (7, vec![]),
    ] {
        let page = audit(&s, &format!("?after={after}&limit=3")).await;
        assert_eq!(page["last_seq"], 7, "{page}");
        let got: Vec<u64> = events(&page)
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(got, seqs, "after={after}");
        paged.extend(events(&page).iter().cloned());
    }
    assert_eq!(&paged, list);
    let beyond = audit(&s, "?after=100").await;
    assert_eq!(beyond, json!({"events": [], "last_seq": 7}));
    let one = audit(&s, "?limit=1").await;
    assert_eq!(events(&one).len(), 1);
    assert_eq!(events(&one)[0], list[0]);
}

// ------------------------------------------------------------------ the feed

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_has_etags_304s_and_a_feed_file_of_the_same_bytes() {
    let (s, _clock) = server().await;
    let first = feed(&s).await;
    let doc = first.ok(200);
    let empty = "\"0-0000000000000000\"";
    assert_eq!(first.header("etag"), Some(empty));
    assert_eq!(first.header("cache-control"), Some("no-cache"));
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(
        doc,
        json!({"revision": "0", "generated_at": "2030-03-04T09:00:00Z", "grants": []})
    );
    feed_checked(&s).await;

    for tag in [
        empty.to_owned(),
        format!("W/{empty}"),
        format!("\"7-0000000000000000\", {empty}"),
        "*".to_owned(),
    ] {
        let same = feed_if_none_match(&s, "", &tag).await;
        assert_eq!(same.status, 304, "If-None-Match: {tag}");
        assert!(same.body.is_empty(), "a 304 has no body: {}", same.text());
        assert_eq!(same.header("etag"), Some(empty));
        assert_eq!(same.header("cache-control"), Some("no-cache"));
    }

    create(&s, ALICE, &finops("ws-1", "2h")).await;
    let (doc, etag1) = feed_checked(&s).await;
    assert_eq!(doc["revision"], "1");
    assert_eq!(doc["grants"], json!([]));
    let stale = feed_if_none_match(&s, "", empty).await;
    assert_eq!(stale.ok(200), doc);
    assert_eq!(stale.header("etag"), Some(etag1.as_str()));

    let mut body = finops("ws-1", "2h");
    body["ticket"] = json!("OPS-9");
    create(&s, ALICE, &body).await;
    command(&s, BOB, "r-2", "approve").await.ok(200);
    let (doc, etag3) = feed_checked(&s).await;
    assert_eq!(doc["revision"], "3");
    assert_eq!(
        doc["grants"],
        json!([{
            "id": "g-2",
            "principal": "User::\"alice\"",
            "role": "FinOpsManager",
            "scope": "Workspace::\"ws-1\"",
            "not_before": "2030-03-04T09:00:00Z",
            "expires_at": "2030-03-04T11:00:00Z",
            "approved_by": ["User::\"bob\""],
            "requested_by": "User::\"alice\"",
            "reason": "month-end invoices",
            "request_id": "r-2",
            "ticket": "OPS-9",
        }])
    );
    assert_eq!(feed_if_none_match(&s, "", &etag3).await.status, 304);
    assert_eq!(feed_if_none_match(&s, "", &etag1).await.ok(200), doc);
    // The same seq of another history, or the seq alone, is not this document.
    for other in ["\"3-ffffffffffffffff\"", "\"3\""] {
        assert_eq!(
            feed_if_none_match(&s, "", other).await.ok(200),
            doc,
            "{other}"
        );
    }

    command(&s, ALICE, "r-1", "cancel").await.ok(200);
    let (doc, _) = feed_checked(&s).await;
    assert_eq!(doc["revision"], "4");
    assert_eq!(grant_ids(&doc), ["g-2"]);
    command(&s, ALICE, "r-2", "relinquish").await.ok(200);
    let (doc, etag5) = feed_checked(&s).await;
    assert_eq!(doc["revision"], "5");
    assert_eq!(doc["grants"], json!([]));
    // Refused commands publish nothing.
    command(&s, BOB, "r-2", "approve")
        .await
        .err(409, "conflict");
    let (doc, etag) = feed_checked(&s).await;
    assert_eq!(doc["revision"], "5");
    assert_eq!(etag, etag5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_answers_promptly_with_the_next_revision_or_304_when_nothing_moves() {
    let (s, _clock) = server().await;
    create(&s, ALICE, &finops("ws-1", "2h")).await;
    let (_, etag) = feed_checked(&s).await;

    // Nothing happens: a 304 after about the second asked for.
    let started = Instant::now();
    let idle = feed_if_none_match(&s, "?wait=1", &etag).await;
    let waited = started.elapsed();
    assert_eq!(idle.status, 304, "{}", idle.text());
    assert!(idle.body.is_empty());
    assert_eq!(idle.header("etag"), Some(etag.as_str()));
    assert!(
        waited >= Duration::from_millis(950) && waited < Duration::from_secs(5),
        "?wait=1 answered after {waited:?}"
    );
    // wait=0 does not wait.
    let started = Instant::now();
    assert_eq!(feed_if_none_match(&s, "?wait=0", &etag).await.status, 304);
    assert!(started.elapsed() < Duration::from_millis(900));
    // A stale ETag is answered at once, wait or not.
    let started = Instant::now();
    assert_eq!(
        feed_if_none_match(&s, "?wait=10", "\"0-0000000000000000\"")
            .await
            .status,
        200
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // An approval while the poll is held: the poll answers with the new revision.
    let poll = {
        let builder = request(&s, Method::GET, "/v1/grants?wait=10", None)
            .header("if-none-match", etag.clone());
        tokio::spawn(async move {
            let reply = send(builder).await;
            (reply, Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "the long-poll answered before anything changed"
    );
    let approved_at = Instant::now();
    command(&s, BOB, "r-1", "approve").await.ok(200);
    let (reply, answered_at) = tokio::time::timeout(Duration::from_secs(9), poll)
        .await
        .expect("the long-poll was not answered within its 10 s")
        .unwrap();
    let lag = answered_at.saturating_duration_since(approved_at);
    assert!(
        lag < Duration::from_secs(3),
        "answered {lag:?} after the approval"
    );
    let doc = reply.ok(200);
    let (_, now_current) = feed_checked(&s).await;
    assert_eq!(reply.header("etag"), Some(now_current.as_str()));
    assert_eq!(doc["revision"], "2");
    assert_eq!(grant_ids(&doc), ["g-1"]);
    assert_eq!(doc, feed_checked(&s).await.0);

    send(request(&s, Method::GET, "/v1/grants?wait=301", None))
        .await
        .err(422, "invalid");
    assert_eq!(feed_if_none_match(&s, "?wait=300", &etag).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_in_process_follows_each_command_at_once() {
    let (s, _clock) = server().await;
    assert_answer(&alice_creates_payment_method(&s).await, "Deny", &[], &[]);
    for round in 1..=3 {
        let id = format!("r-{round}");
        let grant = format!("g-{round}");
        create(&s, ALICE, &finops("ws-1", "2h")).await;
        // Pending is not granted.
        assert_answer(&alice_creates_payment_method(&s).await, "Deny", &[], &[]);
        let approved = command(&s, BOB, &id, "approve").await.ok(200);
        // No polling: the response to the approval means the sidecar has the grant.
        let answer = alice_creates_payment_method(&s).await;
        assert_answer(&answer, "Allow", &[grant.as_str()], &[grant.as_str()]);
        let expires: Timestamp = approved["grant"]["expires_at"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(valid_until(&answer), Some(expires));
        // Only the grantee, only in the scope.
        let other = s
            .decide(
                &user("alice"),
                &action("createPaymentMethod"),
                &uid("Workspace", "ws-2"),
            )
            .await;
        assert_eq!(other["decision"], "Deny");
        let bob = s
            .decide(
                &user("bob"),
                &action("createPaymentMethod"),
                &uid("Workspace", "ws-1"),
            )
            .await;
        assert_eq!(bob["decision"], "Deny");

        let ender = if round == 2 { ALICE } else { CAROL };
        let verb = if round == 2 { "relinquish" } else { "revoke" };
        command(&s, ender, &id, verb).await.ok(200);
        assert_answer(&alice_creates_payment_method(&s).await, "Deny", &[], &[]);
    }
    let status = s.status().await;
    assert_eq!(status["grants"]["accepted"], 0, "{status}");
    assert_eq!(status["grants"]["suspended"], false, "{status}");
}

// ------------------------------------------------------------------ time

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_request_lapses_exactly_at_decide_by_and_the_ticker_records_it() {
    let (s, clock) = server().await;
    let made = create(&s, ALICE, &finops("ws-1", "2h")).await;
    let decide_by: Timestamp = made["decide_by"].as_str().unwrap().parse().unwrap();
    assert_eq!(decide_by, at(TTL));
    let (_, before) = feed_checked(&s).await;

    clock.set(decide_by - secs(1));
    assert_eq!(state_of(&s, "r-1").await, "pending");
    assert_eq!(listed(&s, "?state=pending").await, ["r-1"]);

    clock.set(decide_by);
    // Derived from time: lapsed at once, whether or not the ticker ran yet.
    assert_eq!(state_of(&s, "r-1").await, "lapsed");
    assert_eq!(listed(&s, "?state=lapsed").await, ["r-1"]);
    assert!(listed(&s, "?state=pending").await.is_empty());
    let sentence = command(&s, BOB, "r-1", "approve")
        .await
        .err(409, "conflict");
    assert!(sentence.contains("it is lapsed"), "{sentence}");

    let event = ticked(&s, "r-1", "lapsed").await;
    assert_eq!(event["actor"], "elevate");
    assert_eq!(event["seq"], 2);
    assert_eq!(event["data"]["at"], decide_by.to_string());
    assert_eq!(
        elevation(&s, "r-1").await["ended"],
        json!({"state": "lapsed", "by": "elevate", "at": decide_by.to_string()})
    );
    let (doc, after) = feed_checked(&s).await;
    assert_ne!(after, before);
    assert!(after.starts_with("\"2-"), "{after}");
    assert_eq!(doc["grants"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_is_in_force_from_not_before_until_just_before_expires_at() {
    let (s, clock) = server().await;
    create(&s, ALICE, &finops("ws-1", "2h")).await;
    let approved = command(&s, BOB, "r-1", "approve").await.ok(200);
    let expires_at = at(SignedDuration::from_hours(2));
    assert_eq!(approved["grant"]["expires_at"], expires_at.to_string());

    // A grant that starts later: in the feed at once, in force only from its start.
    let later = json!({
        "role": "FinOpsManager",
        "scope": uid("Workspace", "ws-2"),
        "duration": "1h",
        "reason": "warehouse invoices",
        "not_before": at(SignedDuration::from_mins(30)).to_string(),
    });
    create(&s, DAVE, &later).await;
    command(&s, CAROL, "r-2", "approve").await.ok(200);
    let (doc, _) = feed_checked(&s).await;
    assert_eq!(grant_ids(&doc), ["g-1", "g-2"]);
    let dave_pays = async || {
        s.decide(
            &user("dave"),
            &action("createPaymentMethod"),
            &uid("Workspace", "ws-2"),
        )
        .await["decision"]
            .clone()
    };
    assert_eq!(dave_pays().await, "Deny");
    clock.set(at(SignedDuration::from_mins(30)) - secs(1));
    assert_eq!(dave_pays().await, "Deny");
    clock.set(at(SignedDuration::from_mins(30)));
    assert_eq!(dave_pays().await, "Allow");
    clock.set(at(SignedDuration::from_mins(90)));
    assert_eq!(dave_pays().await, "Deny");
    assert_eq!(state_of(&s, "r-2").await, "expired");
    let event = ticked(&s, "r-2", "expired").await;
    assert_eq!(
        event["data"]["at"],
        at(SignedDuration::from_mins(90)).to_string()
    );
    let (doc, _) = feed_checked(&s).await;
    assert_eq!(grant_ids(&doc), ["g-1"]);

    clock.set(expires_at - secs(1));
    let answer = alice_creates_payment_method(&s).await;
    assert_answer(&answer, "Allow", &["g-1"], &["g-1"]);
    assert_eq!(valid_until(&answer), Some(expires_at));
    assert_eq!(state_of(&s, "r-1").await, "approved");

    clock.set(expires_at);
    // The sidecar and the workflow agree, before the ticker records anything.
    assert_answer(&alice_creates_payment_method(&s).await, "Deny", &[], &[]);
    assert_eq!(state_of(&s, "r-1").await, "expired");
    command(&s, CAROL, "r-1", "revoke")
        .await
        .err(409, "conflict");
    let more = json!({"duration": "1h", "reason": "more"});
    post(&s, ALICE, "/v1/elevations/r-1/extend", &more)
        .await
        .err(409, "conflict");

    let event = ticked(&s, "r-1", "expired").await;
    assert_eq!(event["actor"], "elevate");
    assert_eq!(event["data"]["at"], expires_at.to_string());
    let (doc, etag) = feed_checked(&s).await;
    assert_eq!(doc["grants"], json!([]));
    assert_eq!(
        etag,
        format!(
            "\"{}-{}\"",
            event["seq"],
            &event["hash"].as_str().unwrap()[..16]
        )
    );
    assert_eq!(
        elevation(&s, "r-1").await["ended"],
        json!({"state": "expired", "by": "elevate", "at": expires_at.to_string()})
    );
    assert_answer(&alice_creates_payment_method(&s).await, "Deny", &[], &[]);
}

// --------------------------------------------------------- status, metrics

fn responses(text: &str, route: &str, code: u16) -> f64 {
    metric(
        text,
        &format!("elevate_http_responses_total{{code=\"{code}\",route=\"{route}\"}}"),
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_describe_the_workflow() {
    let (s, _clock) = server().await;
    let status = s.status().await;
    let workflow = &status["workflow"];
    assert_eq!(workflow["service"]["last_seq"], 0, "{status:#}");
    assert_eq!(workflow["service"]["feed_revision"], 0, "{status:#}");
    assert_eq!(workflow["service"]["requests"], 0, "{status:#}");
    assert_eq!(
        workflow["service"]["feed_file"],
        s.layout.feed_file().display().to_string()
    );
    assert_eq!(workflow["tokens"]["entries"], TOKENS.len(), "{status:#}");
    assert_eq!(
        workflow["tokens"]["path"],
        s.layout.tokens_file().display().to_string()
    );

    let before = s.metrics().await;
    create(&s, ALICE, &finops("ws-1", "1h")).await;
    create(&s, ALICE, &finops("ws-1", "1h")).await;
    command(&s, BOB, "r-1", "approve").await.ok(200);
    command(&s, BOB, "r-1", "approve")
        .await
        .err(409, "conflict");
    command(&s, ALICE, "r-2", "approve")
        .await
        .err(403, "forbidden");
    get(&s, ALICE, "/v1/whoami").await.ok(200);
    get(&s, STRANGER, "/v1/whoami")
        .await
        .err(401, "unauthenticated");
    let current = feed(&s).await;
    assert_eq!(current.status, 200);
    let etag = current.header("etag").unwrap().to_owned();
    assert_eq!(feed_if_none_match(&s, "", &etag).await.status, 304);
    let after = s.metrics().await;

    let delta = |route, code| responses(&after, route, code) - responses(&before, route, code);
    assert_eq!(delta("workflow", 201), 2.0, "{after}");
    assert_eq!(delta("workflow", 200), 2.0, "{after}");
    assert_eq!(delta("workflow", 409), 1.0, "{after}");
    assert_eq!(delta("workflow", 403), 1.0, "{after}");
    assert_eq!(delta("workflow", 401), 1.0, "{after}");
    assert_eq!(delta("grants", 200), 1.0, "{after}");
    assert_eq!(delta("grants", 304), 1.0, "{after}");

    let seq = last_seq(&s).await;
    assert_eq!(seq, 3);
    let status = s.status().await;
    let service = &status["workflow"]["service"];
    assert_eq!(service["last_seq"], seq, "{status:#}");
    assert_eq!(service["feed_revision"], seq, "{status:#}");
    assert!(etag.starts_with(&format!("\"{seq}-")), "{etag}");
    assert_eq!(etag, expected_etag(&s).await);
    assert_eq!(service["requests"], 2, "{status:#}");
    assert_eq!(service.get("feed_file_error"), None, "{status:#}");
    assert_eq!(service.get("tick_error"), None, "{status:#}");
    assert_eq!(status["grants"]["accepted"], 1, "{status:#}");
}
