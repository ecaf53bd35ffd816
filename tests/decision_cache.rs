//! The decision cache over a real server: a hit answers what a fresh decision would,
//! is counted and logged like one, and stops holding exactly when a grant window
//! opens or closes or the inputs change.

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
use serde_json::Value;
use support::*;

const FINOPS_ALICE: &str = "g-finops-alice";

fn create_pm(principal: &str) -> Value {
    body(
        principal,
        &action("createPaymentMethod"),
        &uid("PaymentMethod", "pm-1"),
    )
}

fn finops_alice(from: SignedDuration, until: SignedDuration) -> Value {
    grant(
        FINOPS_ALICE,
        &user("alice"),
        "FinOpsManager",
        &uid("Workspace", "ws-1"),
        from,
        until,
    )
}

/// The answer without its decision id, which differs on every answer.
fn without_id(answer: &Value) -> Value {
    let mut answer = answer.clone();
    answer.as_object_mut().unwrap().remove("decision_id");
    answer
}

fn cache_counts(text: &str) -> (f64, f64) {
    (
        metric_value(text, "elevate_decision_cache_total{result=\"hit\"}"),
        metric_value(text, "elevate_decision_cache_total{result=\"miss\"}"),
    )
}

async fn post_bytes(server: &TestServer, bytes: &str) -> Value {
    let (status, answer) = server.post_raw("/v1/is_authorized", bytes.to_owned()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_is_answered_from_the_cache_and_still_counted_numbered_and_logged() {
    let server = TestServer::with_grants(vec![finops_alice(minutes(-1), minutes(59))]).await;
    let bytes = create_pm(&user("alice")).to_string();
    let first = post_bytes(&server, &bytes).await;
    let second = post_bytes(&server, &bytes).await;
    assert_answer(&second, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    assert_eq!(without_id(&first), without_id(&second));
    assert_ne!(first["decision_id"], second["decision_id"]);

    // Explained requests are always decided afresh, and never counted as lookups.
    let (status, explained) = server
        .post_raw("/v1/is_authorized?explain=true", bytes.clone())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(explained["explanation"].is_object(), "{explained}");
    // The same meaning in other bytes is a miss, with the same answer.
    let spaced = bytes.replace(',', ", ");
    let third = post_bytes(&server, &spaced).await;
    assert_eq!(without_id(&third), without_id(&first));

    let text = server.metrics().await;
    assert_eq!(cache_counts(&text), (1.0, 2.0));
    assert_eq!(
        metric_value(
            &text,
            "elevate_decisions_total{decision=\"allow\",grant=\"used\"}"
        ),
        4.0
    );
    // The hit has its own record, with the grant it used and its own time.
    let id = second["decision_id"].clone();
    let record = server
        .wait_for_log_record(RELOAD_TIMEOUT, |r| r["decision_id"] == id)
        .await;
    assert_eq!(record["decision"], "Allow", "{record}");
    assert_eq!(record["grants"][0]["id"], FINOPS_ALICE, "{record}");
    assert_eq!(record["grants"][0]["ticket"], format!("T-{FINOPS_ALICE}"));
    let first_id = first["decision_id"].clone();
    let first_record = server
        .wait_for_log_record(RELOAD_TIMEOUT, |r| r["decision_id"] == first_id)
        .await;
    let time = |r: &Value| r["time"].as_str().unwrap().parse::<Timestamp>().unwrap();
    assert!(time(&record) >= time(&first_record));
    let strip = |r: &Value| {
        let mut r = r.clone();
        let map = r.as_object_mut().unwrap();
        map.remove("decision_id");
        map.remove("time");
        r
    };
    assert_eq!(strip(&record), strip(&first_record));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_allow_ends_when_the_feed_revokes_its_grant() {
    let server = TestServer::with_grants(vec![finops_alice(minutes(-1), minutes(59))]).await;
    let bytes = create_pm(&user("alice")).to_string();
    for _ in 0..2 {
        assert_answer(
            &post_bytes(&server, &bytes).await,
            "Allow",
            &[FINOPS_ALICE],
            &[FINOPS_ALICE],
        );
    }
    assert_eq!(cache_counts(&server.metrics().await).0, 1.0);
    let generation = server.generation().await;
    write_feed(&server.layout.grants, "revoked", vec![]);
    server
        .wait_for_generation(generation + 1, RELOAD_TIMEOUT)
        .await;
    assert_answer(&post_bytes(&server, &bytes).await, "Deny", &[], &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_deny_ends_the_instant_a_grant_comes_into_force() {
    const WAIT: SignedDuration = SignedDuration::from_millis(1500);
    const MARGIN: SignedDuration = SignedDuration::from_millis(300);
    let server = TestServer::start(|_| {}).await;
    let bytes = create_pm(&user("alice")).to_string();
    let mut generation = server.generation().await;
    // Load a grant that starts WAIT from now, and ask twice (a miss, then a hit) while
    // at least MARGIN remains. A loaded machine may eat the margin; then the attempt
    // proves nothing and is repeated with a fresh grant.
    let mut proved = None;
    for attempt in 1..=5 {
        let g = finops_alice(WAIT, minutes(10));
        let starts: Timestamp = g["not_before"].as_str().unwrap().parse().unwrap();
        write_feed(&server.layout.grants, &format!("later-{attempt}"), vec![g]);
        generation = server
            .wait_for_generation(generation + 1, RELOAD_TIMEOUT)
            .await["generation"]
            .as_u64()
            .unwrap();
        let before = cache_counts(&server.metrics().await).0;
        let answers = [
            post_bytes(&server, &bytes).await,
            post_bytes(&server, &bytes).await,
        ];
        if Timestamp::now() >= starts - MARGIN {
            continue;
        }
        for answer in &answers {
            assert_answer(answer, "Deny", &[], &[]);
        }
        assert_eq!(cache_counts(&server.metrics().await).0, before + 1.0);
        proved = Some(starts);
        break;
    }
    let starts = proved.expect("no attempt asked twice at least 300 ms before the grant started");

    let wait = Timestamp::now().duration_until(starts) + SignedDuration::from_millis(20);
    if wait.is_positive() {
        tokio::time::sleep(Duration::try_from(wait).unwrap()).await;
    }
    let answer = post_bytes(&server, &bytes).await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    assert_eq!(
        server.generation().await,
        generation,
        "nothing was reloaded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_off_every_request_is_decided() {
    let server = TestServer::start_with(
        |l| write_feed(&l.grants, "1", vec![finops_alice(minutes(-1), minutes(59))]),
        |config| config.http.decision_cache_bytes = 0,
    )
    .await;
    let bytes = create_pm(&user("alice")).to_string();
    for _ in 0..3 {
        assert_answer(
            &post_bytes(&server, &bytes).await,
            "Allow",
            &[FINOPS_ALICE],
            &[FINOPS_ALICE],
        );
    }
    assert_eq!(cache_counts(&server.metrics().await), (0.0, 0.0));
}
