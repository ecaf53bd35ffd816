//! The decision API end to end: a real server over the shipped policies, schema and
//! entities, with grant feeds relative to now.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

const FINOPS_ALICE: &str = "g-finops-alice";
const ORGADMIN_BB2: &str = "g-orgadmin-bb2";
const FUTURE_CAROL: &str = "g-future-carol";
const EXPIRED_DAVE: &str = "g-expired-dave";
const ORGUSER_BOB: &str = "g-orguser-bob";
const FINOPS_FRANK: &str = "g-finops-frank";
const ORGADMIN_FRANK: &str = "g-orgadmin-frank";

/// The grants most tests run with; every one of them is valid for its role.
fn standard_grants() -> Vec<Value> {
    vec![
        grant_now(
            FINOPS_ALICE,
            &user("alice"),
            "FinOpsManager",
            &uid("Workspace", "ws-1"),
        ),
        grant_now(
            ORGADMIN_BB2,
            &api_key("bb-ws2"),
            "OrganizationAdmin",
            &uid("Organization", "acme"),
        ),
        grant(
            FUTURE_CAROL,
            &user("carol"),
            "FinOpsManager",
            &uid("Workspace", "ws-1"),
            minutes(30),
            minutes(90),
        ),
        grant(
            EXPIRED_DAVE,
            &user("dave"),
            "FinOpsManager",
            &uid("Workspace", "ws-2"),
            hours(-2),
            hours(-1),
        ),
        grant_now(
            ORGUSER_BOB,
            &user("bob"),
            "OrganizationUser",
            &uid("Organization", "acme"),
        ),
        grant(
            FINOPS_FRANK,
            &user("frank"),
            "FinOpsManager",
            &uid("Workspace", "ws-1"),
            minutes(-1),
            minutes(30),
        ),
        grant(
            ORGADMIN_FRANK,
            &user("frank"),
            "OrganizationAdmin",
            &uid("Organization", "acme"),
            minutes(-1),
            minutes(50),
        ),
    ]
}

/// Number of grants in `standard_grants` in force now.
const STANDARD_IN_FORCE: u64 = 5;

async fn standard_server() -> (TestServer, Vec<Value>) {
    let grants = standard_grants();
    let server = TestServer::with_grants(grants.clone()).await;
    (server, grants)
}

fn find<'a>(grants: &'a [Value], id: &str) -> &'a Value {
    grants.iter().find(|g| g["id"] == id).unwrap()
}

fn create_pm(principal: &str, pm: &str) -> Value {
    body(
        principal,
        &action("createPaymentMethod"),
        &uid("PaymentMethod", pm),
    )
}

// ------------------------------------------------------------------ decisions

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_allows_what_the_role_does_not_and_names_itself_until_it_expires() {
    let (server, grants) = standard_server().await;
    let answer = server.decide_body(&create_pm(&user("alice"), "pm-1")).await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    assert_eq!(
        valid_until(&answer),
        Some(expires_at(find(&grants, FINOPS_ALICE)))
    );
    assert!(
        answer["decision_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{answer}"
    );

    // Reading a payment method is billing too: members may not, the grant may.
    let answer = server
        .decide(
            &user("alice"),
            &action("readPaymentMethod"),
            &uid("PaymentMethod", "pm-1"),
        )
        .await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    // The grant is scoped to ws-1: a payment method of ws-2 stays out of reach.
    let answer = server.decide_body(&create_pm(&user("alice"), "pm-2")).await;
    assert_answer(&answer, "Deny", &[], &[]);
    assert_eq!(valid_until(&answer), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workspace_role_allow_names_the_static_policy_and_no_grant() {
    let (server, _) = standard_server().await;
    let answer = server
        .decide(
            &user("alice"),
            &action("readProject"),
            &uid("Project", "checkout"),
        )
        .await;
    assert_answer(&answer, "Allow", &["workspace-member-read"], &[]);
    assert!(answer.get("valid_until").is_none(), "{answer}");
    // A member of ws-1 only: a project of ws-2 is not hers.
    let answer = server
        .decide(
            &user("alice"),
            &action("readProject"),
            &uid("Project", "warehouse"),
        )
        .await;
    assert_answer(&answer, "Deny", &[], &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_until_is_absent_when_a_static_policy_also_allows() {
    let (server, grants) = standard_server().await;
    // Bob owns ws-1 and holds OrganizationUser on acme: both permit reading checkout.
    let answer = server
        .decide(
            &user("bob"),
            &action("readProject"),
            &uid("Project", "checkout"),
        )
        .await;
    assert_answer(
        &answer,
        "Allow",
        &[ORGUSER_BOB, "workspace-owner-read-write"],
        &[ORGUSER_BOB],
    );
    assert_eq!(valid_until(&answer), None, "{answer}");
    // In ws-2 only the grant allows, so the answer is valid until it expires.
    let answer = server
        .decide(
            &user("bob"),
            &action("readProject"),
            &uid("Project", "warehouse"),
        )
        .await;
    assert_answer(&answer, "Allow", &[ORGUSER_BOB], &[ORGUSER_BOB]);
    assert_eq!(
        valid_until(&answer),
        Some(expires_at(find(&grants, ORGUSER_BOB)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_on_two_grants_is_valid_until_the_later_expiry() {
    let (server, grants) = standard_server().await;
    let answer = server.decide_body(&create_pm(&user("frank"), "pm-1")).await;
    assert_answer(
        &answer,
        "Allow",
        &[FINOPS_FRANK, ORGADMIN_FRANK],
        &[FINOPS_FRANK, ORGADMIN_FRANK],
    );
    assert_eq!(
        valid_until(&answer),
        Some(expires_at(find(&grants, ORGADMIN_FRANK)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_beats_grant_for_an_apikey_outside_its_own_workspace() {
    let (server, _) = standard_server().await;
    // bb-ws2 holds OrganizationAdmin on the whole organization, yet it is bound to ws-2.
    for (act, resource) in [
        ("readProject", uid("Project", "checkout")),
        ("createPaymentMethod", uid("PaymentMethod", "pm-1")),
        ("updateWorkspace", uid("Workspace", "ws-1")),
    ] {
        let answer = server
            .decide(&api_key("bb-ws2"), &action(act), &resource)
            .await;
        assert_answer(&answer, "Deny", &["apikey-outside-own-workspace"], &[]);
        assert_eq!(valid_until(&answer), None);
    }
    // Inside ws-2 the same grant does elevate the key.
    let answer = server
        .decide_body(&create_pm(&api_key("bb-ws2"), "pm-2"))
        .await;
    assert_answer(&answer, "Allow", &[ORGADMIN_BB2], &[ORGADMIN_BB2]);
    // And the member-management guardrail holds even inside its own workspace.
    let answer = server
        .decide(
            &api_key("bb-ws2"),
            &action("manageMembers"),
            &uid("Workspace", "ws-2"),
        )
        .await;
    assert_answer(
        &answer,
        "Deny",
        &["apikey-no-member-admin-or-workspace-deletion"],
        &[],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_that_has_not_started_does_not_allow() {
    let (server, _) = standard_server().await;
    let answer = server.decide_body(&create_pm(&user("carol"), "pm-1")).await;
    assert_answer(&answer, "Deny", &[], &[]);
    assert_eq!(valid_until(&answer), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_grant_does_not_allow_but_the_workspace_role_still_does() {
    let (server, _) = standard_server().await;
    let answer = server.decide_body(&create_pm(&user("dave"), "pm-2")).await;
    assert_answer(&answer, "Deny", &[], &[]);
    let answer = server
        .decide(
            &user("dave"),
            &action("readProject"),
            &uid("Project", "warehouse"),
        )
        .await;
    assert_answer(&answer, "Allow", &["workspace-manager-read-write"], &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uid_object_form_decides_like_the_string_form() {
    let (server, _) = standard_server().await;
    let strings = server.decide_body(&create_pm(&user("alice"), "pm-1")).await;
    let objects = server
        .decide_body(&json!({
            "principal": {"type": "User", "id": "alice"},
            "action": {"type": "Action", "id": "createPaymentMethod"},
            "resource": {"type": "PaymentMethod", "id": "pm-1"},
        }))
        .await;
    let mixed = server
        .decide_body(&json!({
            "principal": {"__entity": {"type": "User", "id": "alice"}},
            "action": "Action::\"createPaymentMethod\"",
            "resource": {"type": "PaymentMethod", "id": "pm-1"},
        }))
        .await;
    for answer in [&strings, &objects, &mixed] {
        assert_answer(answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
        assert_eq!(answer["valid_until"], strings["valid_until"]);
    }
    let deny = server
        .decide_body(&json!({
            "principal": {"type": "User", "id": "carol"},
            "action": {"type": "Action", "id": "createPaymentMethod"},
            "resource": {"type": "PaymentMethod", "id": "pm-1"},
        }))
        .await;
    assert_answer(&deny, "Deny", &[], &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_with_source_ip_and_mfa_is_accepted() {
    let (server, _) = standard_server().await;
    let mut request = create_pm(&user("alice"), "pm-1");
    request["context"] = json!({
        "source_ip": {"__extn": {"fn": "ip", "arg": "10.1.2.3"}},
        "mfa": true,
    });
    let answer = server.decide_body(&request).await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);

    // With a schema the `__extn` escape may be implicit.
    request["context"] = json!({"source_ip": {"fn": "ip", "arg": "192.168.0.0/16"}});
    let answer = server.decide_body(&request).await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);

    let mut request = body(
        &user("carol"),
        &action("readProject"),
        &uid("Project", "checkout"),
    );
    request["context"] = json!({"source_ip": {"__extn": {"fn": "ip", "arg": "::1"}}});
    let answer = server.decide_body(&request).await;
    assert_answer(&answer, "Deny", &[], &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_entities_add_a_new_payment_method_that_the_grant_covers() {
    let (server, grants) = standard_server().await;
    let new_pm = |id: &str, ws: &str| {
        let mut request = create_pm(&user("alice"), id);
        request["entities"] = json!([{
            "uid": {"type": "PaymentMethod", "id": id},
            "attrs": {},
            "parents": [{"type": "Workspace", "id": ws}],
        }]);
        request
    };
    // Not in the store, so without the body entity it has no parent and no grant covers it.
    let answer = server
        .decide_body(&create_pm(&user("alice"), "pm-new"))
        .await;
    assert_answer(&answer, "Deny", &[], &[]);

    let answer = server.decide_body(&new_pm("pm-new", "ws-1")).await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    assert_eq!(
        valid_until(&answer),
        Some(expires_at(find(&grants, FINOPS_ALICE)))
    );
    // The same entity in ws-2 is outside the grant's scope.
    let answer = server.decide_body(&new_pm("pm-new", "ws-2")).await;
    assert_answer(&answer, "Deny", &[], &[]);
    // Body entities do not persist: the next request without them is as before.
    let answer = server
        .decide_body(&create_pm(&user("alice"), "pm-new"))
        .await;
    assert_answer(&answer, "Deny", &[], &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_entity_that_duplicates_a_stored_one_is_unprocessable() {
    let (server, _) = standard_server().await;
    let mut request = create_pm(&user("alice"), "pm-1");
    // A body copy of pm-1 moved to ws-2 must not replace the stored one.
    request["entities"] = json!([{
        "uid": {"type": "PaymentMethod", "id": "pm-1"},
        "attrs": {},
        "parents": [{"type": "Workspace", "id": "ws-2"}],
    }]);
    let (status, answer) = server.post_json("/v1/is_authorized", &request).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("PaymentMethod::\"pm-1\"") && error.contains("already in the entity store"),
        "{error}"
    );
    assert!(answer.get("decision").is_none(), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_each_request_in_order() {
    let (server, _) = standard_server().await;
    let requests = json!([
        create_pm(&user("alice"), "pm-1"),
        create_pm(&user("bob"), "pm-1"),
        body(
            &user("alice"),
            &action("readProject"),
            &uid("Project", "checkout")
        ),
        body(
            &user("erin"),
            &action("readProject"),
            &uid("Project", "checkout")
        ),
        body(
            &api_key("bb-ws2"),
            &action("readProject"),
            &uid("Project", "checkout")
        ),
        create_pm(&api_key("bb-ws2"), "pm-2"),
        create_pm(&user("carol"), "pm-1"),
    ]);
    let (status, answer) = server
        .post_json("/v1/batch_is_authorized", &json!({ "requests": requests }))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 7, "{answer:#}");
    assert_answer(&results[0], "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    assert_answer(&results[1], "Deny", &[], &[]);
    assert_answer(&results[2], "Allow", &["workspace-member-read"], &[]);
    assert_answer(&results[3], "Deny", &["suspended-principal"], &[]);
    assert_answer(&results[4], "Deny", &["apikey-outside-own-workspace"], &[]);
    assert_answer(&results[5], "Allow", &[ORGADMIN_BB2], &[ORGADMIN_BB2]);
    assert_answer(&results[6], "Deny", &[], &[]);
    let ids: std::collections::HashSet<&str> = results
        .iter()
        .map(|r| r["decision_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 7, "decision ids are unique: {answer:#}");
}

// ------------------------------------------------------------------ bad input

enum Call {
    Post(&'static str, Vec<u8>),
    /// A POST on a connection that is not reused afterwards (see
    /// `refusing_an_oversized_body_leaves_the_connection_usable_or_says_it_closes`).
    PostOnce(&'static str, Vec<u8>),
    Method(reqwest::Method, &'static str),
}

fn post(path: &'static str, value: Value) -> Call {
    Call::Post(path, serde_json::to_vec(&value).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_with_an_error_that_says_what_is_wrong() {
    let (server, _) = standard_server().await;
    let good = create_pm(&user("alice"), "pm-1");
    let with = |key: &str, value: Value| {
        let mut b = good.clone();
        b[key] = value;
        b
    };
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("resource");
    let oversized = {
        let mut b = good.clone();
        b["context"] = json!({ "padding": "x".repeat(MAX_BODY) });
        serde_json::to_vec(&b).unwrap()
    };
    let cases: Vec<(&str, Call, StatusCode, &str)> = vec![
        (
            "invalid JSON",
            Call::Post("/v1/is_authorized", b"{\"principal\": ".to_vec()),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "missing field",
            post("/v1/is_authorized", missing),
            StatusCode::BAD_REQUEST,
            "missing field `resource`",
        ),
        (
            "unknown field",
            post(
                "/v1/is_authorized",
                with("subject", json!("User::\"alice\"")),
            ),
            StatusCode::BAD_REQUEST,
            "subject",
        ),
        (
            "malformed UID",
            post("/v1/is_authorized", with("principal", json!("alice"))),
            StatusCode::BAD_REQUEST,
            "`principal`",
        ),
        (
            "UID object without id",
            post(
                "/v1/is_authorized",
                with("resource", json!({"type": "PaymentMethod"})),
            ),
            StatusCode::BAD_REQUEST,
            "`resource`",
        ),
        (
            "unknown action",
            post(
                "/v1/is_authorized",
                with("action", json!("Action::\"launchRocket\"")),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "launchRocket",
        ),
        (
            "unknown entity type",
            post(
                "/v1/is_authorized",
                with("principal", json!("Robot::\"r2\"")),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "Robot",
        ),
        (
            "context of the wrong type",
            post("/v1/is_authorized", with("context", json!({"mfa": "yes"}))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "context `{mfa: \"yes\"}` is not valid",
        ),
        (
            "context attribute the schema does not declare",
            post("/v1/is_authorized", with("context", json!({"admin": true}))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "admin",
        ),
        (
            "entities that are not Cedar entities",
            post("/v1/is_authorized", with("entities", json!([{"uid": 3}]))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`entities`",
        ),
        (
            "body over max_body",
            Call::PostOnce("/v1/is_authorized", oversized),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than the limit of 65536 bytes",
        ),
        (
            "wrong method on a decision route",
            Call::Method(reqwest::Method::GET, "/v1/is_authorized"),
            StatusCode::METHOD_NOT_ALLOWED,
            "does not allow `GET`; use `POST`",
        ),
        (
            "wrong method on a read route",
            Call::Method(reqwest::Method::DELETE, "/v1/status"),
            StatusCode::METHOD_NOT_ALLOWED,
            "does not allow `DELETE`; use `GET`",
        ),
        (
            "unknown path",
            Call::Method(reqwest::Method::GET, "/v2/is_authorized"),
            StatusCode::NOT_FOUND,
            "no route for `GET /v2/is_authorized`",
        ),
        (
            "batch without requests",
            post("/v1/batch_is_authorized", json!({"items": []})),
            StatusCode::BAD_REQUEST,
            "not valid JSON",
        ),
        (
            "batch with one unprocessable item",
            post(
                "/v1/batch_is_authorized",
                json!({"requests": [good.clone(), with("action", json!("Action::\"launchRocket\"")), good.clone()]}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "`requests[1]`",
        ),
        (
            "batch with one malformed item",
            post(
                "/v1/batch_is_authorized",
                json!({"requests": [good.clone(), good.clone(), with("resource", json!(7))]}),
            ),
            StatusCode::BAD_REQUEST,
            "`requests[2]`: `resource`",
        ),
    ];
    for (name, send, expected, needle) in cases {
        let response = match send {
            Call::Post(path, bytes) => server
                .client
                .post(server.url(path))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes)
                .send()
                .await
                .unwrap(),
            Call::PostOnce(path, bytes) => server
                .client
                .post(server.url(path))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::CONNECTION, "close")
                .body(bytes)
                .send()
                .await
                .unwrap(),
            Call::Method(method, path) => server
                .client
                .request(method, server.url(path))
                .send()
                .await
                .unwrap(),
        };
        let status = response.status();
        let allow = response.headers().get(reqwest::header::ALLOW).cloned();
        let text = response.text().await.unwrap();
        assert_eq!(status, expected, "{name}: {text}");
        let answer: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {text}"));
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no `error`: {answer}"));
        assert!(
            error.contains(needle),
            "{name}: `{error}` does not contain `{needle}`"
        );
        assert!(answer.get("decision").is_none(), "{name}: {answer}");
        if status == StatusCode::METHOD_NOT_ALLOWED {
            let allow = allow.unwrap_or_else(|| panic!("{name}: 405 without Allow"));
            assert!(
                ["GET", "POST"].contains(&allow.to_str().unwrap()),
                "{name}: Allow {allow:?}"
            );
        }
    }
    // After all that the server still answers, and the grant still allows.
    let answer = server.decide_body(&good).await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    // No 5xx was counted for any of it.
    let metrics = server.metrics().await;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("elevate_http_responses_total") && l.contains("code=\"5")),
        "{metrics}"
    );
}

// --------------------------------------------------- health, status, metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_status_describe_the_loaded_snapshot() {
    let (server, _) = standard_server().await;
    let (status, health) = server.get_json("/healthz").await;
    assert_eq!(
        (status, &health),
        (StatusCode::OK, &json!({"status": "alive"}))
    );
    let (status, ready) = server.get_json("/readyz").await;
    assert_eq!(
        (status, &ready),
        (StatusCode::OK, &json!({"status": "ready", "generation": 1}))
    );

    let doc = server.status().await;
    assert_eq!(doc["generation"], 1, "{doc:#}");
    assert_eq!(doc["validation"], "strict");
    assert_eq!(doc["revisions"]["grants"], "1");
    for input in ["policies", "schema", "entities"] {
        let revision = doc["revisions"][input].as_str().unwrap();
        assert_eq!(revision.len(), 16, "{input}: {doc:#}");
    }
    for input in ["policies", "schema", "entities", "grants"] {
        let s = &doc["inputs"][input];
        assert_eq!(s["last_error"], Value::Null, "{input}: {doc:#}");
        assert_eq!(s["reloads"], 1, "{input}: {doc:#}");
        assert_eq!(s["failures"], 0, "{input}: {doc:#}");
        assert!(s["last_reload"].as_str().is_some(), "{input}: {doc:#}");
        assert_eq!(s["revision"], doc["revisions"][input], "{input}: {doc:#}");
    }
    assert_eq!(
        doc["inputs"]["grants"]["path"],
        server.layout.grants.to_str().unwrap()
    );
    assert_eq!(doc["grants"]["accepted"], standard_grants().len());
    assert_eq!(doc["grants"]["in_force"], STANDARD_IN_FORCE);
    assert_eq!(doc["grants"]["rejected_count"], 0);
    assert_eq!(doc["grants"]["rejected"], json!([]));
    assert_eq!(doc["grants"]["suspended"], false);
    assert_eq!(doc["policies"]["static"], 19, "{doc:#}");
    let mut roles = strings(&doc["policies"]["roles"]);
    roles.sort();
    assert_eq!(
        roles,
        ["FinOpsManager", "OrganizationAdmin", "OrganizationUser"]
    );
    assert_eq!(doc["policies"]["findings"], 0);
    // 22 entities in the data plus the schema's action entities.
    assert!(doc["entities"].as_u64().unwrap() >= 22, "{doc:#}");

    // HEAD is a GET without a body.
    let head = server
        .client
        .head(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_grant_decisions_and_expose_snapshot_gauges() {
    let (server, _) = standard_server().await;
    let grant_uses = [
        (create_pm(&user("alice"), "pm-1"), FINOPS_ALICE),
        (create_pm(&api_key("bb-ws2"), "pm-2"), ORGADMIN_BB2),
        (
            body(
                &user("bob"),
                &action("readProject"),
                &uid("Project", "warehouse"),
            ),
            ORGUSER_BOB,
        ),
    ];
    for (request, id) in &grant_uses {
        let answer = server.decide_body(request).await;
        assert_answer(&answer, "Allow", &[id], &[id]);
    }
    let answer = server
        .decide(
            &user("alice"),
            &action("readProject"),
            &uid("Project", "checkout"),
        )
        .await;
    assert_answer(&answer, "Allow", &["workspace-member-read"], &[]);
    for _ in 0..2 {
        let answer = server.decide_body(&create_pm(&user("carol"), "pm-1")).await;
        assert_answer(&answer, "Deny", &[], &[]);
    }
    let text = server.metrics().await;
    assert_eq!(
        metric_value(
            &text,
            "elevate_decisions_total{decision=\"allow\",grant=\"used\"}"
        ),
        3.0
    );
    assert_eq!(
        metric_value(
            &text,
            "elevate_decisions_total{decision=\"allow\",grant=\"none\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &text,
            "elevate_decisions_total{decision=\"deny\",grant=\"none\"}"
        ),
        2.0
    );
    assert_eq!(
        metric_value(
            &text,
            "elevate_decisions_total{decision=\"deny\",grant=\"used\"}"
        ),
        0.0
    );
    assert_eq!(metric_value(&text, "elevate_snapshot_generation"), 1.0);
    assert_eq!(
        metric_value(&text, "elevate_grants_in_force"),
        STANDARD_IN_FORCE as f64
    );
    assert_eq!(
        metric_value(&text, "elevate_grants"),
        standard_grants().len() as f64
    );
    assert_eq!(
        metric_value(
            &text,
            "elevate_reload_total{input=\"policies\",outcome=\"error\"}"
        ),
        0.0
    );
    assert!(
        text.contains("# TYPE elevate_decision_duration_seconds histogram"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decision_log_records_the_grant_an_allow_used_with_ticket_and_revisions() {
    let (server, grants) = standard_server().await;
    let answer = server.decide_body(&create_pm(&user("alice"), "pm-1")).await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    let plain = server
        .decide(
            &user("alice"),
            &action("readProject"),
            &uid("Project", "checkout"),
        )
        .await;
    assert_answer(&plain, "Allow", &["workspace-member-read"], &[]);
    let id = answer["decision_id"].clone();
    let record = server
        .wait_for_log_record(RELOAD_TIMEOUT, |r| r["decision_id"] == id)
        .await;
    assert_eq!(record["decision"], "Allow", "{record:#}");
    assert_eq!(record["principal"], "User::\"alice\"");
    assert_eq!(record["action"], "Action::\"createPaymentMethod\"");
    assert_eq!(record["resource"], "PaymentMethod::\"pm-1\"");
    assert_eq!(strings(&record["reasons"]), [FINOPS_ALICE]);
    let used = record["grants"].as_array().unwrap();
    assert_eq!(used.len(), 1, "{record:#}");
    assert_eq!(used[0]["id"], FINOPS_ALICE);
    assert_eq!(used[0]["ticket"], format!("T-{FINOPS_ALICE}"));
    assert_eq!(used[0]["role"], "FinOpsManager");
    assert_eq!(used[0]["scope"], "Workspace::\"ws-1\"");
    let expiry = expires_at(find(&grants, FINOPS_ALICE));
    assert_eq!(
        used[0]["expires_at"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .unwrap(),
        expiry
    );
    assert_eq!(valid_until(&record), Some(expiry));
    assert_eq!(record["generation"], 1);
    let status = server.status().await;
    assert_eq!(record["revisions"], status["revisions"], "{record:#}");
    assert_eq!(record["revisions"]["grants"], "1");

    let plain_id = plain["decision_id"].clone();
    let record = server
        .wait_for_log_record(RELOAD_TIMEOUT, |r| r["decision_id"] == plain_id)
        .await;
    assert_eq!(strings(&record["reasons"]), ["workspace-member-read"]);
    assert!(record.get("grants").is_none(), "{record:#}");
}

// ------------------------------------------------------------ real time, h2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_stops_allowing_at_expires_at_in_real_time_without_a_reload() {
    const LIFETIME: SignedDuration = SignedDuration::from_millis(1200);
    const MARGIN: SignedDuration = SignedDuration::from_millis(300);
    let server = TestServer::start(|_| {}).await;
    let request = create_pm(&user("alice"), "pm-1");
    let mut generation = server.generation().await;

    // Load a grant that expires LIFETIME from now, and ask while at least MARGIN remains.
    // A loaded machine may eat the margin before the answer is back; then the attempt
    // proves nothing and is repeated with a fresh grant.
    let mut proved = None;
    for attempt in 1..=5 {
        let g = grant(
            FINOPS_ALICE,
            &user("alice"),
            "FinOpsManager",
            &uid("Workspace", "ws-1"),
            minutes(-1),
            LIFETIME,
        );
        let expiry = expires_at(&g);
        write_feed(&server.layout.grants, &format!("rt-{attempt}"), vec![g]);
        generation = server
            .wait_for_generation(generation + 1, RELOAD_TIMEOUT)
            .await["generation"]
            .as_u64()
            .unwrap();
        if Timestamp::now() >= expiry - MARGIN {
            continue;
        }
        let answer = server.decide_body(&request).await;
        let answered = Timestamp::now();
        if answer["decision"] == "Deny" && answered >= expiry {
            continue;
        }
        // Sent before expiry - MARGIN and answered before expiry: must be Allow.
        assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
        assert_eq!(valid_until(&answer), Some(expiry));
        proved = Some(expiry);
        break;
    }
    let expiry = proved.expect("no attempt got an answer at least 300 ms before expiry");

    // Past expires_at (same clock as the server's), the very next decision is Deny.
    let wait = Timestamp::now().duration_until(expiry) + SignedDuration::from_millis(20);
    if wait.is_positive() {
        tokio::time::sleep(Duration::try_from(wait).unwrap()).await;
    }
    assert!(Timestamp::now() > expiry);
    let answer = server.decide_body(&request).await;
    assert_answer(&answer, "Deny", &[], &[]);
    assert_eq!(valid_until(&answer), None);
    // Nothing was reloaded in between: the same snapshot now denies.
    let status = server.status().await;
    assert_eq!(
        status["generation"].as_u64().unwrap(),
        generation,
        "{status:#}"
    );
    assert_eq!(status["grants"]["accepted"], 1);
    assert_eq!(status["grants"]["in_force"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_prior_knowledge_request_is_answered() {
    let (server, _) = standard_server().await;
    let client = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let response = client
        .post(server.url("/v1/is_authorized"))
        .json(&create_pm(&user("alice"), "pm-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    let answer: Value = response.json().await.unwrap();
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    // Several streams on the one connection, batch included.
    let (a, b) = tokio::join!(
        client
            .post(server.url("/v1/batch_is_authorized"))
            .json(&json!({"requests": [create_pm(&user("carol"), "pm-1"), create_pm(&user("alice"), "pm-1")]}))
            .send(),
        client.get(server.url("/readyz")).send(),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        (a.version(), b.version()),
        (reqwest::Version::HTTP_2, reqwest::Version::HTTP_2)
    );
    assert_eq!(b.status(), StatusCode::OK);
    let batch: Value = a.json().await.unwrap();
    assert_answer(&batch["results"][0], "Deny", &[], &[]);
    assert_answer(
        &batch["results"][1],
        "Allow",
        &[FINOPS_ALICE],
        &[FINOPS_ALICE],
    );
}

/// Reads one HTTP/1.1 response (headers and a `content-length` body) from `stream`.
/// `None` if the server closed the connection before a response.
async fn read_response(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Option<(String, String)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                return Some((head, body));
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "no response within 10 s; got so far: {}",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusing_an_oversized_body_leaves_the_connection_usable_or_says_it_closes() {
    use tokio::io::AsyncWriteExt;
    let (server, _) = standard_server().await;
    let good = serde_json::to_vec(&create_pm(&user("alice"), "pm-1")).unwrap();
    // A keep-alive client (a gateway's upstream pool) sends a whole oversized request...
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let body = vec![b' '; MAX_BODY + 1];
    let head = format!(
        "POST /v1/is_authorized HTTP/1.1\r\nhost: elevate\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let (head, answer) = read_response(&mut stream).await.expect("a 413 response");
    assert!(head.starts_with("http/1.1 413"), "{head}");
    assert!(
        answer.contains("larger than the limit of 65536 bytes"),
        "{answer}"
    );
    if head.lines().any(|l| l.trim() == "connection: close") {
        // The server said it will close: a client will not reuse the connection.
        return;
    }
    // ...and, not told otherwise, reuses the connection for the next request.
    let next = format!(
        "POST /v1/is_authorized HTTP/1.1\r\nhost: elevate\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        good.len()
    );
    let sent = async {
        stream.write_all(next.as_bytes()).await?;
        stream.write_all(&good).await
    }
    .await;
    let response = match sent {
        Ok(()) => read_response(&mut stream).await,
        Err(_) => None,
    };
    let (head2, answer) = response.unwrap_or_else(|| {
        panic!(
            "the 413 response kept the connection open (no `connection: close`), \
             but the server closed it: the next request on it failed.\n413 head:\n{head}"
        )
    });
    assert!(head2.starts_with("http/1.1 200"), "{head2}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_body_over_max_body_is_refused_with_413() {
    use tokio::io::AsyncWriteExt;
    let (server, _) = standard_server().await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // No content-length: the limit must hold while the body streams in.
    let writer = tokio::spawn(async move {
        let head = "POST /v1/is_authorized HTTP/1.1\r\nhost: elevate\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 8 * 1024];
        for _ in 0..(MAX_BODY / chunk.len() + 2) {
            write
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            write.write_all(&chunk).await?;
            write.write_all(b"\r\n").await?;
        }
        write.write_all(b"0\r\n\r\n").await?;
        write.flush().await?;
        Ok::<_, std::io::Error>(write)
    });
    let (head, answer) = read_response(&mut read)
        .await
        .expect("a response to the oversized chunked body");
    assert!(head.starts_with("http/1.1 413"), "{head}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("larger than the limit of 65536 bytes"),
        "{answer}"
    );
    // The writer may have been cut off by the server closing; either way it ends.
    let _ = writer.await.unwrap();
    // And the server still decides.
    let answer = server.decide_body(&create_pm(&user("alice"), "pm-1")).await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_server_flushes_every_grant_decision_record() {
    let (server, _) = standard_server().await;
    let mut ids = Vec::new();
    for _ in 0..25 {
        let answer = server.decide_body(&create_pm(&user("alice"), "pm-1")).await;
        assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
        ids.push(answer["decision_id"].as_str().unwrap().to_owned());
    }
    let log = server.layout.decision_log.clone();
    // `stop` returns once the log is written and synced: no polling needed.
    let _dir = server.stop().await;
    let text = std::fs::read_to_string(log).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for id in &ids {
        let record = records
            .iter()
            .find(|r| r["decision_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no record for {id} right after stop:\n{text}"));
        assert_eq!(record["grants"][0]["id"], FINOPS_ALICE);
        assert_eq!(record["grants"][0]["ticket"], format!("T-{FINOPS_ALICE}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_batch_decides_nothing() {
    let (server, _) = standard_server().await;
    let requests = json!([
        create_pm(&user("alice"), "pm-1"),
        body(&user("alice"), &action("fly"), &uid("Project", "checkout")),
    ]);
    let (status, answer) = server
        .post_json("/v1/batch_is_authorized", &json!({ "requests": requests }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("requests[1]"),
        "{answer}"
    );
    // On the test client's pooled connection, idle since the readiness check: the
    // header timeout times request heads only, never the wait between requests.
    let metrics = server.metrics().await;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("elevate_decisions_total{"))
    {
        assert!(line.ends_with(" 0"), "no decision may be counted: {line}");
    }
}

/// Reads until the server closes the connection; returns what it sent, or `None`
/// if it is still open at `deadline`.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let server =
        TestServer::start_with(|_| {}, |c| c.http.idle_timeout = Duration::from_millis(300)).await;
    let addr = server.running().addr;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // The answer arrives, then the connection (keep-alive by default) goes idle and is closed.
    let got = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("idle connection closed within 5 s");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("alive"), "{text}");
    // The server still answers on a new connection. Not the test client's pooled one:
    // it has been idle as long, and the server may close it just as a request goes out.
    let fresh = reqwest::Client::builder().no_proxy().build().unwrap();
    let answer: Value = fresh
        .post(server.url("/v1/is_authorized"))
        .json(&body(
            &user("alice"),
            &action("readProject"),
            &uid("Project", "checkout"),
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_answer(&answer, "Allow", &["workspace-member-read"], &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_trickled_past_the_header_timeout_get_the_connection_closed() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start_with(
        |_| {},
        |c| c.http.header_timeout = Duration::from_millis(300),
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(server.running().addr)
        .await
        .unwrap();
    stream
        .write_all(b"POST /v1/is_authorized HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let got = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("slow headers closed within 5 s");
    // No decision was made for the half-sent request.
    assert!(
        !String::from_utf8_lossy(&got).contains("decision"),
        "{got:?}"
    );
    // On the test client's pooled connection, idle since the readiness check: the
    // header timeout times request heads only, never the wait between requests.
    let metrics = server.metrics().await;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("elevate_decisions_total{"))
    {
        assert!(line.ends_with(" 0"), "no decision may be counted: {line}");
    }
}

/// A grant id with a quote and a backslash is answered, logged and put in the
/// reasons as written, not in Cedar's escaped form of a policy id (found by fuzzing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_ids_are_answered_as_written() {
    let id = r#"g'q"\1"#;
    let server = TestServer::start(|layout| {
        write_feed(
            &layout.grants,
            "1",
            vec![grant_now(
                id,
                &user("alice"),
                "FinOpsManager",
                &uid("Workspace", "ws-1"),
            )],
        );
    })
    .await;
    let answer = server.decide_body(&create_pm(&user("alice"), "pm-1")).await;
    assert_answer(&answer, "Allow", &[id], &[id]);
}

// ------------------------------------------------------------------ request-head deadline

/// A server whose header timeout (300 ms) is far below its idle timeout (60 s), so a
/// connection closed within seconds was closed by the head deadline.
async fn short_header_timeout_server() -> TestServer {
    TestServer::start_with(
        |layout| write_feed(&layout.grants, "1", standard_grants()),
        |c| {
            c.http.header_timeout = Duration::from_millis(300);
            c.http.idle_timeout = Duration::from_secs(60);
        },
    )
    .await
}

/// A decision request for `create_pm(alice)` as raw HTTP/1.1 bytes.
fn raw_decision() -> Vec<u8> {
    let body = create_pm(&user("alice"), "pm-1").to_string();
    format!(
        "POST /v1/is_authorized HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_waiting_past_the_header_timeout_serves_its_next_request() {
    use tokio::io::AsyncWriteExt;
    let server = short_header_timeout_server().await;
    let mut stream = tokio::net::TcpStream::connect(server.running().addr)
        .await
        .unwrap();
    // A request with a body, then one without: both ways a response hands the
    // connection back to waiting. Each wait is three header timeouts long.
    let requests: [&[u8]; 3] = [
        &raw_decision(),
        b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n",
        &raw_decision(),
    ];
    for (n, request) in requests.iter().enumerate() {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(900)).await;
        }
        stream.write_all(request).await.unwrap();
        let (head, body) = read_response(&mut stream).await.unwrap_or_else(|| {
            panic!("request {n} found the kept-alive connection closed by the server")
        });
        assert!(head.starts_with("http/1.1 200"), "request {n}: {head}");
        assert!(!head.contains("connection: close"), "request {n}: {head}");
        if request.starts_with(b"POST") {
            let answer: Value = serde_json::from_str(&body).unwrap();
            assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
        } else {
            assert!(body.contains("alive"), "{body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_head_after_a_kept_alive_wait_gets_the_connection_closed_long_before_the_idle_timeout()
 {
    use tokio::io::AsyncWriteExt;
    let server = short_header_timeout_server().await;
    let mut stream = tokio::net::TcpStream::connect(server.running().addr)
        .await
        .unwrap();
    stream.write_all(&raw_decision()).await.unwrap();
    let (head, _) = read_response(&mut stream).await.expect("first answer");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    // Idle past the header timeout (allowed), then half a head and a stall (not).
    tokio::time::sleep(Duration::from_millis(900)).await;
    stream
        .write_all(b"POST /v1/is_authorized HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // The idle timeout is 60 s: a close within 10 s is the head deadline's.
    let got = read_until_closed(&mut stream, Duration::from_secs(10))
        .await
        .expect("a stalled head kept its connection open for 10 s");
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_half_head_is_timed_from_the_answer_before_it() {
    use tokio::io::AsyncWriteExt;
    let server = short_header_timeout_server().await;
    let mut stream = tokio::net::TcpStream::connect(server.running().addr)
        .await
        .unwrap();
    // One write: a whole request and the start of the next, which never completes.
    // The second's bytes sit in hyper's buffer; no later read announces them.
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /healthz HTTP/1.1\r\nhost")
        .await
        .unwrap();
    let got = read_until_closed(&mut stream, Duration::from_secs(10))
        .await
        .expect("a pipelined half head kept its connection open for 10 s");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_left_to_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start_with(
        |_| {},
        |c| {
            c.http.header_timeout = Duration::from_millis(300);
            c.http.idle_timeout = Duration::from_secs(3);
        },
    )
    .await;
    let addr = server.running().addr;
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    read_until_closed(&mut stalled, Duration::from_secs(10))
        .await
        .expect("the stalled head was closed");
    // Opened together: the head deadline closed the stalled one; the silent one, with
    // no head on its way, waits for the idle timeout ten header timeouts later.
    let mut probe = [0u8; 16];
    match silent.try_read(&mut probe) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the silent connection was closed with the stalled one: {other:?}"),
    }
    let got = read_until_closed(&mut silent, Duration::from_secs(20))
        .await
        .expect("the idle timeout closed the silent connection");
    assert!(got.is_empty(), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_is_never_head_timed() {
    use http_body_util::{BodyExt, Full};
    let server = short_header_timeout_server().await;
    let tcp = tokio::net::TcpStream::connect(server.running().addr)
        .await
        .unwrap();
    // One connection by hand (prior knowledge), so a reconnect cannot hide a close.
    // It pings while idle, as gateways' h2 pools do: frames between requests, which an
    // HTTP/1 head timer would take for the start of a head.
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(100))
            .keep_alive_while_idle(true)
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let body = create_pm(&user("alice"), "pm-1").to_string();
    for n in 0..3 {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(900)).await;
        }
        assert!(!sender.is_closed(), "closed before request {n}");
        let request = hyper::Request::post(server.url("/v1/is_authorized"))
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body.clone())))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
            .await
            .expect("an answer within 10 s")
            .unwrap_or_else(|e| panic!("request {n} on the h2 connection failed: {e}"));
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let answer: Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes())
                .unwrap();
        assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    }
}
