#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The gateway endpoints end to end.
//!
//! * Real gateways: a real `elevate serve` process (the CLI flags included), a tiny
//!   upstream that echoes what it got, and the real nginx (`auth_request`) and Caddy
//!   (`forward_auth`), unprivileged on loopback, running the shipped
//!   `deploy/nginx/nginx.conf` and `deploy/caddy/Caddyfile` with this test's ports
//!   (the harness and the scenario are `tests/real_gateway/`, shared with Envoy's).
//!   Each shows an allow, a deny, a 401, a grant that allows until it expires, the
//!   decision's headers reaching the upstream, and client-forged headers not doing so.
//!   A missing nginx or caddy FAILS the test: a skip would hide a missing CI step.
//! * The API in process: `/v1/forward-auth` and AuthZEN details, route table reload.

mod real_gateway;
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use elevate::config::{Config, DecisionLog, HttpConfig, ReloadConfig, Sources, Validation};
use real_gateway::{
    Behaviour, CHECKOUT, Elevate, TIMEOUT, Upstream, client, exercise, require, start_caddy,
    start_nginx,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{feed, repo_root, write_atomic, write_json};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_allows_denies_and_honours_grant_expiry() {
    // Before anything starts, so a missing install fails at once.
    require("nginx", "-v");
    let upstream = Upstream::start();
    let elevate = Elevate::start().await;
    let nginx = start_nginx(elevate.port, upstream.port);
    let behaviour = Behaviour {
        passes_body: false,
        valid_until: true,
        grant_secs: 6,
    };
    exercise("nginx", &nginx, &elevate, &upstream, behaviour).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_allows_denies_and_honours_grant_expiry() {
    // Before anything starts, so a missing install fails at once.
    require("caddy", "version");
    let upstream = Upstream::start();
    let elevate = Elevate::start().await;
    let caddy = start_caddy(elevate.port, upstream.port);
    let behaviour = Behaviour {
        passes_body: true,
        valid_until: false,
        grant_secs: 6,
    };
    exercise("caddy", &caddy, &elevate, &upstream, behaviour).await;
}

// ------------------------------------------------------------- in process

/// An in-process server with a route table, on the shipped inputs plus
/// `tests/fixtures/gateways/network.cedar`, all copied into a temp dir.
struct InProcess {
    base: String,
    dir: tempfile::TempDir,
    running: Option<elevate::cli::serve::Running>,
    client: reqwest::Client,
}

impl InProcess {
    async fn start(routes: &Path, client_ip_header: Option<&str>) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("elevate-gw-api-")
            .tempdir()
            .unwrap();
        let root = repo_root();
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        for entry in std::fs::read_dir(root.join("policies")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "cedar") {
                std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
            }
        }
        std::fs::copy(
            support::fixture("gateways").join("network.cedar"),
            policies.join("network.cedar"),
        )
        .unwrap();
        let grants = dir.path().join("grants.json");
        write_json(&grants, &feed("0", vec![]));
        let routes_file = dir.path().join("routes").join("routes.toml");
        std::fs::create_dir_all(routes_file.parent().unwrap()).unwrap();
        std::fs::copy(routes, &routes_file).unwrap();
        let reload = ReloadConfig {
            debounce: Duration::from_millis(50),
            rescan: Duration::from_millis(500),
            ..ReloadConfig::default()
        };
        let config = Config {
            sources: Sources {
                policies,
                schema: Some(root.join("schema/elevate.cedarschema")),
                entities: Some(root.join("deploy/local/entities.json")),
                grants: Some(grants),
                validation: Validation::Strict,
            },
            reload: reload.clone(),
            http: HttpConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                max_body: 64 * 1024,
                ..HttpConfig::default()
            },
            decision_log: DecisionLog::File(dir.path().join("decisions.jsonl")),
            decision_queue: 1024,
            shutdown_grace: Duration::from_secs(2),
            workflow: None,
        };
        let gateway = elevate::gateway::Config {
            routes: routes_file,
            principal_header: "x-auth-principal".parse().unwrap(),
            principal_type: "User".parse().unwrap(),
            client_ip_header: client_ip_header.map(|h| h.parse().unwrap()),
            jwt: None,
            reload,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = elevate::cli::serve::start_with_gateway(
            config,
            None,
            Some(gateway),
            listener,
            elevate::http::system_clock(),
            prometheus::Registry::new(),
            CancellationToken::new(),
        )
        .unwrap_or_else(|e| panic!("server did not start: {e}"));
        Self {
            base: format!("http://{}", running.addr),
            dir,
            running: Some(running),
            client: client(),
        }
    }

    fn routes_file(&self) -> PathBuf {
        self.dir.path().join("routes").join("routes.toml")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /v1/forward-auth` as nginx sends it for `method uri`.
    async fn forward(&self, method: &str, uri: &str, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self
            .client
            .get(self.url("/v1/forward-auth"))
            .header("x-original-method", method)
            .header("x-original-uri", uri);
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn status(&self) -> Value {
        self.client
            .get(self.url("/v1/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn wait_for_routes(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let doc = self.status().await;
            let routes = &doc["gateway"]["routes"];
            if pred(routes) {
                return routes.clone();
            }
            assert!(Instant::now() < deadline, "waiting for {what}: {routes:#}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.cancel.cancel();
        }
    }
}

fn shipped_routes() -> PathBuf {
    repo_root().join("deploy/local/routes.toml")
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn forward_auth_answers_with_a_status_and_headers_for_the_gateway() {
    let server = InProcess::start(&shipped_routes(), None).await;
    let alice = [("x-auth-principal", "alice"), ("x-request-id", "r-42")];

    let allow = server.forward("GET", CHECKOUT, &alice).await;
    assert_eq!(allow.status(), StatusCode::OK);
    assert_eq!(
        header(&allow, "x-elevate-principal").unwrap(),
        r#"User::"alice""#
    );
    assert_eq!(header(&allow, "x-elevate-grants").unwrap(), "");
    assert_eq!(header(&allow, "x-request-id").unwrap(), "r-42");
    let id = header(&allow, "x-elevate-decision-id").unwrap();
    let body: Value = allow.json().await.unwrap();
    assert_eq!(body["decision"], "Allow");
    assert_eq!(body["decision_id"], id.as_str());
    assert_eq!(body["route"], "GET /api/workspaces/{ws}/projects/{project}");
    assert_eq!(body["resource"], r#"Project::"checkout""#);
    assert_eq!(
        body["diagnostics"]["reason"],
        json!(["workspace-member-read"])
    );

    let deny = server.forward("DELETE", CHECKOUT, &alice).await;
    assert_eq!(deny.status(), StatusCode::FORBIDDEN);
    assert!(header(&deny, "x-elevate-decision-id").is_some());
    assert!(
        header(&deny, "x-elevate-principal").is_none(),
        "only an allow carries it"
    );
    assert_eq!(deny.json::<Value>().await.unwrap()["decision"], "Deny");

    // Caddy's and Traefik's convention, a POST, and a bare id of another type.
    let caddy = server
        .client
        .post(server.url("/v1/forward-auth"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", CHECKOUT)
        .header("x-auth-principal", r#"ApiKey::"bb-ws1""#)
        .send()
        .await
        .unwrap();
    assert_eq!(caddy.status(), StatusCode::OK);

    let anonymous = server.forward("GET", CHECKOUT, &[]).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&anonymous, "www-authenticate").is_some());
    let invalid = server
        .forward("GET", CHECKOUT, &[("x-auth-principal", "User::alice")])
        .await;
    assert_eq!(invalid.status(), StatusCode::UNAUTHORIZED);
    let body: Value = invalid.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("User::alice"),
        "{body}"
    );
}

#[tokio::test]
async fn forward_auth_refuses_what_it_cannot_read_and_denies_what_no_route_covers() {
    let server = InProcess::start(&shipped_routes(), None).await;
    let alice = [("x-auth-principal", "alice")];
    let missing = server
        .client
        .get(server.url("/v1/forward-auth"))
        .header("x-auth-principal", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let conflict = server
        .forward(
            "DELETE",
            CHECKOUT,
            &[
                ("x-auth-principal", "alice"),
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", CHECKOUT),
            ],
        )
        .await;
    assert_eq!(conflict.status(), StatusCode::BAD_REQUEST);
    let body: Value = conflict.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("disagree"),
        "{body}"
    );

    let no_route = server.forward("GET", "/api/rockets", &alice).await;
    assert_eq!(no_route.status(), StatusCode::FORBIDDEN);
    let body: Value = no_route.json().await.unwrap();
    assert_eq!(body["reason"], "no_route");
    assert!(
        body["error"].as_str().unwrap().contains("GET /api/rockets"),
        "{body}"
    );
    // A route exists for GET, not for POST.
    let wrong_method = server.forward("POST", CHECKOUT, &alice).await;
    assert_eq!(wrong_method.status(), StatusCode::FORBIDDEN);
    let unsafe_path = server
        .forward(
            "GET",
            "/api/workspaces/ws-2/../ws-1/projects/checkout",
            &alice,
        )
        .await;
    assert_eq!(unsafe_path.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        unsafe_path.json::<Value>().await.unwrap()["reason"],
        "unsafe_path"
    );

    let put = server
        .client
        .put(server.url("/v1/forward-auth"))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn forward_auth_without_a_route_table_says_how_to_get_one() {
    let server = support::TestServer::start(|_| {}).await;
    let response = server
        .client
        .get(server.url("/v1/forward-auth"))
        .header("x-original-method", "GET")
        .header("x-original-uri", CHECKOUT)
        .header("x-auth-principal", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("--routes"),
        "{body}"
    );
}

#[tokio::test]
async fn the_context_carries_the_client_ip_only_from_a_trusted_header() {
    let alice = |ip: &'static str, id: &'static str| {
        [
            ("x-auth-principal", "alice"),
            ("x-real-ip", ip),
            ("x-request-id", id),
        ]
    };
    // Not trusted: a client's X-Real-IP is ignored, the peer (127.0.0.1) is used.
    let server = InProcess::start(&shipped_routes(), None).await;
    let r = server
        .forward("GET", CHECKOUT, &alice("203.0.113.9", "r"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    drop(server);

    let server = InProcess::start(&shipped_routes(), Some("x-real-ip")).await;
    let r = server
        .forward("GET", CHECKOUT, &alice("203.0.113.9", "r"))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["diagnostics"]["reason"],
        json!(["blocked-network"]),
        "{body}"
    );
    let r = server
        .forward("GET", CHECKOUT, &alice("198.51.100.1", "r"))
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // Trusted but missing: the gateway is not setting it, so nothing is decided.
    let r = server
        .forward("GET", CHECKOUT, &[("x-auth-principal", "alice")])
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Selected headers and the query are in `context.http` too.
    let r = server
        .forward("GET", CHECKOUT, &alice("198.51.100.1", "blocked"))
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["diagnostics"]["reason"], json!(["blocked-request-id"]));
    let owner = [("x-auth-principal", "bob"), ("x-real-ip", "198.51.100.1")];
    let r = server.forward("DELETE", CHECKOUT, &owner).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = server
        .forward("DELETE", &format!("{CHECKOUT}?force=1"), &owner)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_bad_route_table_on_reload_keeps_the_last_good_one() {
    let server = InProcess::start(
        &support::fixture("gateways").join("routes-small.toml"),
        None,
    )
    .await;
    let alice = [("x-auth-principal", "alice")];
    let first = server
        .wait_for_routes("the first table", |r| r["routes"] == 2)
        .await;
    assert!(first["last_error"].is_null());
    assert_eq!(
        server
            .forward("GET", "/api/workspaces/ws-1", &alice)
            .await
            .status(),
        StatusCode::FORBIDDEN,
        "no such route yet"
    );

    write_atomic(
        &server.routes_file(),
        &std::fs::read_to_string(support::fixture("gateways").join("routes-unknown-action.toml"))
            .unwrap(),
    );
    let failed = server
        .wait_for_routes("the reload error", |r| !r["last_error"].is_null())
        .await;
    let error = failed["last_error"].as_str().unwrap();
    assert!(error.contains("launchRocket"), "{error}");
    assert_eq!(failed["routes"], 2);
    assert_eq!(failed["failures"], 1);
    let metrics = server.metrics().await;
    assert_eq!(
        support::metric_value(
            &metrics,
            r#"elevate_reload_total{input="routes",outcome="error"}"#
        ),
        1.0
    );
    // The last good table still answers.
    assert_eq!(
        server.forward("GET", CHECKOUT, &alice).await.status(),
        StatusCode::OK
    );

    std::fs::copy(shipped_routes(), server.routes_file().with_extension("new")).unwrap();
    std::fs::rename(
        server.routes_file().with_extension("new"),
        server.routes_file(),
    )
    .unwrap();
    let fixed = server
        .wait_for_routes("the shipped table", |r| r["reloads"] == 2)
        .await;
    assert!(fixed["last_error"].is_null(), "{fixed}");
    assert_eq!(
        server
            .forward("GET", "/api/workspaces/ws-1", &alice)
            .await
            .status(),
        StatusCode::OK
    );
    let metrics = server.metrics().await;
    assert_eq!(
        support::metric_value(
            &metrics,
            r#"elevate_reload_total{input="routes",outcome="ok"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn a_bad_route_table_at_startup_is_fatal() {
    let output = Command::new(env!("CARGO_BIN_EXE_elevate"))
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--policies")
        .arg(repo_root().join("policies"))
        .arg("--schema")
        .arg(repo_root().join("schema/elevate.cedarschema"))
        .arg("--entities")
        .arg(repo_root().join("deploy/local/entities.json"))
        .arg("--routes")
        .arg(support::fixture("gateways").join("routes-unknown-action.toml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("route 1") && stderr.contains("launchRocket"),
        "{stderr}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_elevate"))
        .args(["serve", "--policies", "p", "--principal-header", "X-User"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--routes"));
}

// ------------------------------------------------------------------ AuthZEN

fn subject(id: &str) -> Value {
    json!({"type": "User", "id": id})
}

fn project(id: &str) -> Value {
    json!({"type": "Project", "id": id})
}

#[tokio::test]
async fn authzen_evaluation_answers_decisions_with_a_200() {
    let server = InProcess::start(&shipped_routes(), None).await;
    let (status, answer) = server
        .post(
            "/access/v1/evaluation",
            &json!({"subject": subject("alice"), "action": {"name": "readProject"},
                    "resource": project("checkout"), "context": {"mfa": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["decision"], true);
    assert_eq!(
        answer["context"]["reasons"],
        json!(["workspace-member-read"])
    );
    assert!(answer["context"]["decision_id"].is_string());

    let (status, answer) = server
        .post(
            "/access/v1/evaluation",
            &json!({"subject": subject("alice"), "action": {"name": "deleteProject"},
                    "resource": project("checkout")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "a deny is a decision, not an error");
    assert_eq!(answer["decision"], false);
    assert_eq!(answer["context"]["reasons"], json!([]));

    for bad in [
        json!({"subject": subject("alice"), "action": {"name": "readProject"}}),
        json!({"subject": subject("alice"), "action": {"name": "fly"}, "resource": project("checkout")}),
        json!({"subject": subject("alice"), "action": {"name": "readProject"},
               "resource": project("checkout"), "context": {"mfa": "yes"}}),
    ] {
        let (status, answer) = server.post("/access/v1/evaluation", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    let response = server
        .client
        .post(server.url("/access/v1/evaluation"))
        .header("x-request-id", "pep-7")
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(header(&response, "x-request-id").unwrap(), "pep-7");
}

#[tokio::test]
async fn authzen_evaluations_apply_defaults_and_semantics() {
    let server = InProcess::start(&shipped_routes(), None).await;
    let batch = |semantic: &str| {
        json!({
            "subject": subject("alice"),
            "action": {"name": "readProject"},
            "options": {"evaluations_semantic": semantic},
            "evaluations": [
                {"resource": project("checkout")},
                {"resource": project("warehouse")},
                {"action": {"name": "readProject"}, "resource": {"type": "Rocket", "id": "r"}},
                {"resource": project("ledger")},
            ],
        })
    };
    let (status, answer) = server
        .post("/access/v1/evaluations", &batch("execute_all"))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let decisions: Vec<&Value> = answer["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["decision"])
        .collect();
    assert_eq!(
        decisions,
        [&json!(true), &json!(false), &json!(false), &json!(true)]
    );
    let error = &answer["evaluations"][2]["context"]["error"];
    assert_eq!(error["status"], 422, "{answer}");
    assert!(
        error["message"].as_str().unwrap().contains("Rocket"),
        "{error}"
    );

    let (_, answer) = server
        .post("/access/v1/evaluations", &batch("deny_on_first_deny"))
        .await;
    assert_eq!(
        answer["evaluations"].as_array().unwrap().len(),
        2,
        "{answer}"
    );
    assert_eq!(answer["evaluations"][1]["decision"], false);
    let (_, answer) = server
        .post("/access/v1/evaluations", &batch("permit_on_first_permit"))
        .await;
    assert_eq!(
        answer["evaluations"].as_array().unwrap().len(),
        1,
        "{answer}"
    );

    // Without `evaluations` it is a single evaluation, answered as one.
    let (status, answer) = server
        .post(
            "/access/v1/evaluations",
            &json!({"subject": subject("bob"), "action": {"name": "deleteProject"},
                    "resource": project("checkout")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["decision"], true, "{answer}");
    let (status, _) = server
        .post("/access/v1/evaluations", &batch("first_come"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let metadata: Value = server
        .client
        .get(server.url("/.well-known/authzen-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["access_evaluations_endpoint"],
        server.url("/access/v1/evaluations")
    );
    assert_eq!(metadata["policy_decision_point"], server.base);
}

// ------------------------------------------------------------- configuration

fn gateway_config(args: &[&str]) -> Result<Option<elevate::gateway::Config>, String> {
    use clap::Parser;
    let argv = ["elevate", "serve"].iter().chain(args).copied();
    match elevate::cli::Cli::try_parse_from(argv).unwrap().command {
        elevate::cli::Command::Serve(serve) => serve.gateway_config().map_err(|e| e.to_string()),
        _ => panic!("not serve"),
    }
}

#[test]
fn gateway_flags_and_their_defaults() {
    // The embedded default (no input named) serves the shipped route table.
    let embedded = gateway_config(&[]).unwrap().unwrap();
    assert_eq!(embedded.routes, PathBuf::from("deploy/local/routes.toml"));
    assert_eq!(embedded.principal_header.as_str(), "x-auth-principal");
    assert_eq!(embedded.principal_type.to_string(), "User");
    assert_eq!(embedded.client_ip_header, None);
    // Naming inputs without a route table: no gateway endpoints.
    assert!(gateway_config(&["--grants", "g.json"]).unwrap().is_none());
    let named = gateway_config(&[
        "--grants",
        "g.json",
        "--routes",
        "r.toml",
        "--principal-header",
        "X-User",
        "--principal-type",
        "ApiKey",
        "--client-ip-header",
        "X-Real-IP",
        "--rescan-ms",
        "700",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(named.routes, PathBuf::from("r.toml"));
    assert_eq!(named.principal_header.as_str(), "x-user");
    assert_eq!(named.principal_type.to_string(), "ApiKey");
    assert_eq!(named.client_ip_header.unwrap().as_str(), "x-real-ip");
    assert_eq!(named.reload.rescan, Duration::from_millis(700));

    let err =
        gateway_config(&["--grants", "g.json", "--client-ip-header", "X-Real-IP"]).unwrap_err();
    assert!(err.contains("--routes"), "{err}");
    let err = gateway_config(&["--routes", "r.toml", "--principal-header", "X User"]).unwrap_err();
    assert!(
        err.contains("principal-header") && err.contains("X User"),
        "{err}"
    );
    let err = gateway_config(&["--routes", "r.toml", "--principal-type", "user name"]).unwrap_err();
    assert!(err.contains("principal-type"), "{err}");

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "grants = \"g.json\"\nroutes = \"from-file.toml\"\nprincipal-header = \"X-Forwarded-User\"\n",
    )
    .unwrap();
    let path = file.path().to_str().unwrap();
    let from_file = gateway_config(&["--config", path]).unwrap().unwrap();
    assert_eq!(from_file.routes, PathBuf::from("from-file.toml"));
    assert_eq!(from_file.principal_header.as_str(), "x-forwarded-user");
    let flag_wins = gateway_config(&["--config", path, "--routes", "flag.toml"])
        .unwrap()
        .unwrap();
    assert_eq!(flag_wins.routes, PathBuf::from("flag.toml"));
}
