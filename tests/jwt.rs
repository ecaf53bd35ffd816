#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Bearer JWT principals end to end: a real `elevate serve --jwt-keys` process with
//! a key set made in the test (RS256, ES256 and EdDSA keys), tokens signed in the
//! test, and
//! * `/v1/forward-auth` and `/v1/ext-authz` called directly: an allow per algorithm,
//!   a deny, and a 401 naming the reason for each kind of bad token;
//! * the real nginx (`auth_request` forwards the client's `Authorization`) and the
//!   real Envoy over gRPC (`Check` carries the original headers): a JWT principal
//!   allowed, denied, refused, and allowed by a grant until it expires;
//! * the key set hot-reloaded (rotation), a bad file keeping the last good set, and
//!   the configuration rules (issuer and audience required, no principal header).

mod real_gateway;
mod support;

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use real_gateway::{
    Behaviour, CHECKOUT, Elevate, Gateway, TIMEOUT, Upstream, client, expiring_grant, require,
    require_envoy, send, start_envoy, start_nginx,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{repo_root, write_atomic};

const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "elevate-gateway";

/// A signing key of one algorithm.
struct Signer {
    algorithm: Algorithm,
    kid: String,
    encoding: EncodingKey,
}

impl Signer {
    fn rsa(kid: &str) -> Self {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).unwrap();
        Self {
            algorithm: Algorithm::RS256,
            kid: kid.to_owned(),
            encoding: EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes()),
        }
    }

    fn es256(kid: &str) -> Self {
        use p256::pkcs8::EncodePrivateKey;
        let key = loop {
            if let Ok(key) = p256::SecretKey::from_slice(&random()) {
                break key;
            }
        };
        Self {
            algorithm: Algorithm::ES256,
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
        }
    }

    fn eddsa(kid: &str) -> Self {
        // PKCS #8 v1 of a random Ed25519 seed.
        let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
        der.extend_from_slice(&random());
        Self {
            algorithm: Algorithm::EdDSA,
            kid: kid.to_owned(),
            encoding: EncodingKey::from_ed_der(&der),
        }
    }

    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.algorithm).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(jwk).unwrap()
    }

    /// A token for `sub`, valid now, with `extra` claims replacing (or, when null,
    /// removing) the defaults.
    fn token(&self, sub: &str, extra: &Value) -> String {
        self.token_with_kid(Some(&self.kid), sub, extra)
    }

    fn token_with_kid(&self, kid: Option<&str>, sub: &str, extra: &Value) -> String {
        let now = Timestamp::now().as_second();
        let mut claims = json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub,
                                "iat": now, "exp": now + 300});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        let mut header = Header::new(self.algorithm);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, &claims, &self.encoding).unwrap()
    }
}

fn random() -> [u8; 32] {
    let mut bytes = [0; 32];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn write_keys(path: &Path, signers: &[&Signer]) {
    let keys: Vec<Value> = signers.iter().map(|s| s.jwk()).collect();
    write_atomic(path, &json!({ "keys": keys }).to_string());
}

struct Keys {
    rsa: Signer,
    es: Signer,
    ed: Signer,
}

impl Keys {
    fn new() -> Self {
        Self {
            rsa: Signer::rsa("rsa-1"),
            es: Signer::es256("ec-1"),
            ed: Signer::eddsa("ed-1"),
        }
    }
}

/// elevate in JWT mode, its key set in `keys/jwks.json` of a directory of its own.
async fn start_jwt(keys: &Keys, grpc: bool) -> (Elevate, tempfile::TempDir) {
    let dir = tempfile::Builder::new()
        .prefix("elevate-jwks-")
        .tempdir()
        .unwrap();
    let file = dir.path().join("keys").join("jwks.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    write_keys(&file, &[&keys.rsa, &keys.es, &keys.ed]);
    let args: Vec<OsString> = [
        "--jwt-keys".into(),
        file.into_os_string(),
        "--jwt-issuer".into(),
        ISSUER.into(),
        "--jwt-audience".into(),
        AUDIENCE.into(),
    ]
    .into();
    (Elevate::start_with(grpc, &args).await, dir)
}

fn keys_file(dir: &tempfile::TempDir) -> std::path::PathBuf {
    dir.path().join("keys").join("jwks.json")
}

async fn forward(
    elevate: &Elevate,
    method: &str,
    uri: &str,
    auth: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = client()
        .get(elevate.url("/v1/forward-auth"))
        .header("x-original-method", method)
        .header("x-original-uri", uri)
        .header("x-real-ip", "127.0.0.1")
        // Ignored in JWT mode: only the token names the principal.
        .header("x-auth-principal", "bob");
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, challenge, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_auth_takes_the_principal_from_a_verified_bearer_token() {
    let keys = Keys::new();
    let (elevate, _dir) = start_jwt(&keys, false).await;

    for signer in [&keys.rsa, &keys.es, &keys.ed] {
        let token = signer.token("alice", &json!({}));
        let (status, _, body) = forward(&elevate, "GET", CHECKOUT, Some(&bearer(&token))).await;
        assert_eq!(status, StatusCode::OK, "{:?}: {body}", signer.algorithm);
        assert_eq!(body["principal"], r#"User::"alice""#);
        assert_eq!(
            body["diagnostics"]["reason"],
            json!(["workspace-member-read"])
        );
    }
    // A whole UID in `sub`, and a deny for a principal the token did name.
    let key = keys.es.token(r#"ApiKey::"bb-ws1""#, &json!({}));
    let (status, _, body) = forward(&elevate, "GET", CHECKOUT, Some(&bearer(&key))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["principal"], r#"ApiKey::"bb-ws1""#);
    let alice = keys.ed.token("alice", &json!({}));
    let (status, _, body) = forward(&elevate, "DELETE", CHECKOUT, Some(&bearer(&alice))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["decision"], "Deny");

    // The Envoy HTTP service reads the same header from the original request.
    let response = client()
        .get(elevate.url(&format!("/v1/ext-authz{CHECKOUT}")))
        .header("authorization", bearer(&alice))
        .header("x-real-ip", "127.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-elevate-principal"],
        r#"User::"alice""#
    );

    // Every refusal is a 401 that says why, never a 5xx, never the token.
    let now = Timestamp::now().as_second();
    let other = Signer::es256("ec-1");
    let payload = URL_SAFE_NO_PAD.encode(
        json!({"iss": ISSUER, "aud": AUDIENCE,
        "sub": "alice", "exp": now + 300})
        .to_string(),
    );
    let unsigned = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no token", None, "no principal"),
        (
            "a static API key",
            Some("Bearer demo-alice".into()),
            "not a signed JWT",
        ),
        (
            "basic auth",
            Some("Basic YWxpY2U6eA==".into()),
            "not a bearer token",
        ),
        (
            "expired",
            Some(bearer(&keys.rsa.token("alice", &json!({"exp": now - 120})))),
            "expired at",
        ),
        (
            "not yet valid",
            Some(bearer(&keys.rsa.token("alice", &json!({"nbf": now + 600})))),
            "not valid before",
        ),
        (
            "another audience",
            Some(bearer(&keys.es.token("alice", &json!({"aud": "billing"})))),
            "audience",
        ),
        (
            "another issuer",
            Some(bearer(
                &keys
                    .es
                    .token("alice", &json!({"iss": "https://evil.example"})),
            )),
            "issuer",
        ),
        (
            "no expiry",
            Some(bearer(&keys.ed.token("alice", &json!({"exp": null})))),
            "never expire",
        ),
        (
            "unknown kid",
            Some(bearer(&keys.es.token_with_kid(
                Some("ec-9"),
                "alice",
                &json!({}),
            ))),
            "`ec-9` is not in the key set",
        ),
        (
            "forged signature",
            Some(bearer(&other.token("alice", &json!({})))),
            "signature does not verify",
        ),
        (
            "alg none",
            Some(bearer(&unsigned)),
            "`none` is not accepted",
        ),
        (
            "no subject",
            Some(bearer(&keys.ed.token("alice", &json!({"sub": null})))),
            "no string claim `sub`",
        ),
    ];
    for (what, auth, reason) in &cases {
        let (status, challenge, body) = forward(&elevate, "GET", CHECKOUT, auth.as_deref()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(reason), "{what}: {error}");
        if let Some(token) = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
            assert!(!error.contains(token), "{what}: the token is in the answer");
        }
        let challenge = challenge.unwrap();
        assert_eq!(
            challenge.contains(r#"error="invalid_token""#),
            auth.is_some(),
            "{what}: {challenge}"
        );
    }
    let log = std::fs::read_to_string(elevate.dir.path().join("elevate.err")).unwrap();
    for (what, auth, _) in &cases {
        if let Some(token) = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
            assert!(!log.contains(token), "{what}: the token is in the log");
        }
    }

    // Each refusal is counted under its closed reason.
    let metrics = elevate.metrics().await;
    let rejected = |reason: &str| {
        support::metric_value(
            &metrics,
            &format!(r#"elevate_jwt_rejected_total{{reason="{reason}"}}"#),
        )
    };
    assert_eq!(rejected("missing"), 1.0);
    assert_eq!(rejected("malformed"), 2.0, "a static key and basic auth");
    assert_eq!(rejected("expired"), 2.0, "expired and no expiry");
    assert_eq!(rejected("signature"), 1.0);
    assert_eq!(rejected("unknown_key"), 1.0);
    assert_eq!(rejected("algorithm"), 1.0);
    assert_eq!(rejected("issuer"), 1.0);
    assert_eq!(rejected("audience"), 1.0);
    assert_eq!(rejected("not_yet_valid"), 1.0);
    assert_eq!(rejected("principal"), 1.0);

    let status = elevate.status().await;
    let jwt = &status["gateway"]["routes"]["jwt"];
    assert_eq!(jwt["keys"], json!(["rsa-1", "ec-1", "ed-1"]), "{status:#}");
    assert_eq!(jwt["algorithms"], json!(["ES256", "EdDSA", "RS256"]));
    assert_eq!(jwt["issuer"], ISSUER);
    assert_eq!(jwt["leeway_ms"], 30000);
    assert!(status["gateway"]["routes"]["principal_header"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_set_is_hot_reloaded_and_a_bad_one_keeps_the_last_good_set() {
    let keys = Keys::new();
    let (elevate, dir) = start_jwt(&keys, false).await;
    let file = keys_file(&dir);
    let rotated = Signer::es256("ec-2");
    let wait_for = |pred: fn(&Value) -> bool| {
        let elevate = &elevate;
        async move {
            let deadline = Instant::now() + TIMEOUT;
            loop {
                let status = elevate.status().await;
                let jwt = status["gateway"]["routes"]["jwt"].clone();
                if pred(&jwt) {
                    return jwt;
                }
                assert!(Instant::now() < deadline, "waiting: {jwt:#}");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    };

    // Rotation: ec-2 is added and ec-1 dropped.
    write_keys(&file, &[&keys.rsa, &rotated]);
    let jwt = wait_for(|j| j["reloads"] == 2).await;
    assert_eq!(jwt["keys"], json!(["rsa-1", "ec-2"]));
    let (status, _, _) = forward(
        &elevate,
        "GET",
        CHECKOUT,
        Some(&bearer(&rotated.token("alice", &json!({})))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, body) = forward(
        &elevate,
        "GET",
        CHECKOUT,
        Some(&bearer(&keys.es.token("alice", &json!({})))),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A set with a secret in it is refused whole; the last good set still verifies.
    write_atomic(
        &file,
        &json!({"keys": [rotated.jwk(), {"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}).to_string(),
    );
    let jwt = wait_for(|j| !j["last_error"].is_null()).await;
    assert!(
        jwt["last_error"].as_str().unwrap().contains("symmetric"),
        "{jwt:#}"
    );
    assert_eq!(jwt["keys"], json!(["rsa-1", "ec-2"]));
    assert_eq!(jwt["failures"], 1);
    let (status, _, _) = forward(
        &elevate,
        "GET",
        CHECKOUT,
        Some(&bearer(&rotated.token("alice", &json!({})))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let metrics = elevate.metrics().await;
    assert_eq!(
        support::metric_value(
            &metrics,
            r#"elevate_reload_total{input="jwt_keys",outcome="error"}"#
        ),
        1.0
    );
    assert_eq!(
        support::metric_value(
            &metrics,
            r#"elevate_reload_total{input="jwt_keys",outcome="ok"}"#
        ),
        1.0
    );
}

fn serve(args: &[&str]) -> std::process::Output {
    let root = repo_root();
    Command::new(env!("CARGO_BIN_EXE_elevate"))
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--policies")
        .arg(root.join("policies"))
        .arg("--schema")
        .arg(root.join("schema/elevate.cedarschema"))
        .arg("--entities")
        .arg(root.join("deploy/local/entities.json"))
        .arg("--routes")
        .arg(root.join("deploy/local/routes.toml"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn jwt_mode_needs_an_issuer_an_audience_and_a_usable_key_set() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.json");
    write_keys(&good, &[&Signer::eddsa("ed-1")]);
    let good = good.to_str().unwrap();
    for (args, expected) in [
        (
            vec!["--jwt-keys", good, "--jwt-audience", AUDIENCE],
            "jwt-issuer",
        ),
        (
            vec!["--jwt-keys", good, "--jwt-issuer", ISSUER],
            "jwt-audience",
        ),
        (vec!["--jwt-issuer", ISSUER], "--jwt-keys"),
        (
            vec![
                "--jwt-keys",
                good,
                "--jwt-issuer",
                ISSUER,
                "--jwt-audience",
                AUDIENCE,
                "--principal-header",
                "X-User",
            ],
            "principal-header",
        ),
    ] {
        let out = serve(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let bad = dir.path().join("bad.pem");
    std::fs::write(
        &bad,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let out = serve(&[
        "--jwt-keys",
        bad.to_str().unwrap(),
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("private key") && stderr.contains("bad.pem"),
        "{stderr}"
    );
}

#[test]
fn jwt_settings_come_from_flags_or_the_config_file() {
    use clap::Parser;
    let config = |args: &[&str]| {
        let argv = ["elevate", "serve"].iter().chain(args).copied();
        match elevate::cli::Cli::try_parse_from(argv).unwrap().command {
            elevate::cli::Command::Serve(serve) => serve.gateway_config().unwrap().unwrap(),
            _ => panic!("not serve"),
        }
    };
    let flags = config(&[
        "--routes",
        "r.toml",
        "--jwt-keys",
        "k.json",
        "--jwt-issuer",
        ISSUER,
        "--jwt-audience",
        AUDIENCE,
        "--jwt-principal-claim",
        "email",
        "--jwt-leeway-ms",
        "0",
    ]);
    let jwt = flags.jwt.unwrap();
    assert_eq!(jwt.keys, Path::new("k.json"));
    assert_eq!(
        (jwt.issuer.as_str(), jwt.audience.as_str()),
        (ISSUER, AUDIENCE)
    );
    assert_eq!(jwt.principal_claim, "email");
    assert_eq!(jwt.leeway, Duration::ZERO);

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!(
            "routes = \"r.toml\"\njwt-keys = \"f.json\"\njwt-issuer = \"{ISSUER}\"\n\
                 jwt-audience = \"{AUDIENCE}\"\n"
        ),
    )
    .unwrap();
    let from_file = config(&["--config", file.path().to_str().unwrap()])
        .jwt
        .unwrap();
    assert_eq!(from_file.keys, Path::new("f.json"));
    assert_eq!(from_file.principal_claim, "sub");
    assert_eq!(from_file.leeway, Duration::from_secs(30));
    assert!(config(&["--routes", "r.toml"]).jwt.is_none());
}

/// The JWT scenario through a real gateway that forwards the client's
/// `Authorization`: allow, deny, 401 (even with a demo key the gateway maps to a
/// principal header), and a grant to the token's principal until it expires.
async fn through(
    name: &str,
    gateway: &Gateway,
    elevate: &Elevate,
    upstream: &Upstream,
    keys: &Keys,
    behaviour: Behaviour,
) {
    let client = client();
    use reqwest::Method as M;
    let alice = bearer(&keys.rsa.token("alice", &json!({})));
    let sent = send(
        &client,
        M::GET,
        &gateway.url(CHECKOUT),
        &[("authorization", &alice)],
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{name}: {:?}", sent.body);
    assert_eq!(
        sent.body["headers"]["x-elevate-principal"], r#"User::"alice""#,
        "{name}"
    );
    let reached = upstream.count();
    let sent = send(
        &client,
        M::DELETE,
        &gateway.url(CHECKOUT),
        &[("authorization", &alice)],
    )
    .await;
    assert_eq!(sent.status, StatusCode::FORBIDDEN, "{name}");
    let expired = bearer(
        &keys
            .es
            .token("alice", &json!({"exp": Timestamp::now().as_second() - 120})),
    );
    // The shipped configs map this demo key to `X-Auth-Principal: alice`, which JWT
    // mode never reads.
    for auth in [expired.as_str(), "Bearer demo-alice"] {
        let sent = send(
            &client,
            M::GET,
            &gateway.url(CHECKOUT),
            &[("authorization", auth)],
        )
        .await;
        assert_eq!(sent.status, StatusCode::UNAUTHORIZED, "{name}: {auth}");
        let challenge = sent
            .headers
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            challenge
                .as_deref()
                .is_some_and(|c| c.contains("invalid_token")),
            "{name}: {challenge:?}"
        );
        if behaviour.passes_body {
            assert!(sent.body["error"].is_string(), "{name}: {:?}", sent.body);
        }
    }
    assert_eq!(
        upstream.count(),
        reached,
        "{name}: a refused request reached the upstream"
    );
    let alice = bearer(&keys.ed.token("alice", &json!({})));
    expiring_grant(
        name,
        gateway,
        elevate,
        &[("authorization", &alice)],
        behaviour,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_forwards_the_bearer_token_and_elevate_verifies_it() {
    require("nginx", "-v");
    let keys = Keys::new();
    let upstream = Upstream::start();
    let (elevate, _dir) = start_jwt(&keys, false).await;
    let nginx = start_nginx(elevate.port, upstream.port);
    let behaviour = Behaviour {
        passes_body: false,
        valid_until: true,
        grant_secs: 5,
    };
    through("nginx-jwt", &nginx, &elevate, &upstream, &keys, behaviour).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_grpc_checks_carry_the_bearer_token_to_elevate() {
    require_envoy();
    let keys = Keys::new();
    let upstream = Upstream::start();
    let (elevate, _dir) = start_jwt(&keys, true).await;
    let envoy = start_envoy("envoy-grpc.yaml", elevate.grpc_port.unwrap(), upstream.port);
    let behaviour = Behaviour {
        passes_body: true,
        valid_until: true,
        grant_secs: 5,
    };
    through(
        "envoy-grpc-jwt",
        &envoy,
        &elevate,
        &upstream,
        &keys,
        behaviour,
    )
    .await;
}
