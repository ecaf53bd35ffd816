#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Signed grant feeds end to end: real servers in process on `127.0.0.1:0`, a workflow
//! that signs with keys made by the real `elevate keygen`, and sidecars that verify,
//! following the workflow over HTTP, its feed file, or a fake feed server that replays
//! whatever the test hands it (an old revision, another key's document).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elevate::cli::serve::{Running, StartOptions, start_with_options};
use elevate::config::{
    Config, DecisionLog, FeedSigningConfig, FeedUrl, HttpConfig, ReloadConfig, RemoteFeedConfig,
    Sources, Validation, WorkflowSettings,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

const ALICE: &str = "User::\"alice\"";
const CAROL: &str = "User::\"carol\"";
const WS1: &str = "Workspace::\"ws-1\"";
const PAY: &str = "Action::\"createPaymentMethod\"";
const TIMEOUT: Duration = Duration::from_secs(10);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A key pair from the real `elevate keygen`; returns the key id it printed.
fn keygen(dir: &Path, name: &str) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_elevate"))
        .args(["keygen", "--out"])
        .arg(dir)
        .args(["--name", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(id.len(), 16, "{id}");
    id
}

/// Policies, schema, entities, tokens and keys in one temp dir, shared by every
/// server of a test.
struct World {
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        copy_dir(&repo("policies"), &root.join("policies"));
        std::fs::copy(
            repo("schema/elevate.cedarschema"),
            root.join("schema.cedarschema"),
        )
        .unwrap();
        std::fs::copy(
            repo("deploy/local/entities.json"),
            root.join("entities.json"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("auth")).unwrap();
        let tokens: Vec<Value> = [("alice-token", ALICE), ("carol-token", CAROL)]
            .iter()
            .map(|(t, p)| json!({"sha256": elevate::tokens::digest_hex(t), "principal": p}))
            .collect();
        std::fs::write(
            root.join("auth/tokens.json"),
            Value::Array(tokens).to_string(),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("keys")).unwrap();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self { dir, client }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn key(&self, name: &str) -> String {
        keygen(&self.path("keys"), name)
    }

    fn config(&self, grants: Option<PathBuf>, workflow: Option<WorkflowSettings>) -> Config {
        Config {
            sources: Sources {
                policies: self.path("policies"),
                schema: Some(self.path("schema.cedarschema")),
                entities: Some(self.path("entities.json")),
                grants,
                validation: Validation::Strict,
            },
            reload: ReloadConfig {
                debounce: Duration::from_millis(50),
                rescan: Duration::from_millis(500),
                ..ReloadConfig::default()
            },
            http: HttpConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..HttpConfig::default()
            },
            decision_log: DecisionLog::Off,
            decision_queue: 1024,
            shutdown_grace: Duration::from_secs(2),
            workflow,
        }
    }

    fn feed_file(&self) -> PathBuf {
        self.path("workflow/grants.json")
    }

    /// The workflow, signing with the named keys.
    async fn workflow(&self, keys: &[&str]) -> Server {
        let settings = WorkflowSettings {
            data_dir: self.path("workflow"),
            tokens: self.path("auth/tokens.json"),
            feed_file: Some(self.feed_file()),
            request_ttl: jiff::SignedDuration::from_hours(24),
            webhooks: Vec::new(),
        };
        let signing = FeedSigningConfig {
            signing_keys: keys
                .iter()
                .map(|k| self.path(&format!("keys/{k}.key")))
                .collect(),
            ..FeedSigningConfig::default()
        };
        let options = StartOptions {
            signing,
            ..StartOptions::default()
        };
        self.start(self.config(None, Some(settings)), options)
            .await
            .unwrap()
    }

    fn trusting(&self, keys: &[&str]) -> FeedSigningConfig {
        FeedSigningConfig {
            public_keys: keys
                .iter()
                .map(|k| self.path(&format!("keys/{k}.pub")))
                .collect(),
            ..FeedSigningConfig::default()
        }
    }

    /// A sidecar following `url`, trusting the named keys.
    async fn sidecar_following(&self, url: &str, max_age: Duration, keys: &[&str]) -> Server {
        let mut remote = RemoteFeedConfig::new(FeedUrl::parse(url).unwrap(), max_age);
        remote.backoff_min = Duration::from_millis(50);
        remote.backoff_max = Duration::from_millis(200);
        let options = StartOptions {
            remote_feed: Some(remote),
            signing: self.trusting(keys),
            ..StartOptions::default()
        };
        self.start(self.config(None, None), options).await.unwrap()
    }

    /// A sidecar watching the workflow's feed file, trusting the named keys.
    async fn sidecar_watching_file(&self, keys: &[&str]) -> Result<Server, String> {
        let options = StartOptions {
            signing: self.trusting(keys),
            ..StartOptions::default()
        };
        self.start(self.config(Some(self.feed_file()), None), options)
            .await
    }

    async fn start(&self, config: Config, options: StartOptions) -> Result<Server, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let running = start_with_options(
            config,
            options,
            listener,
            elevate::http::system_clock(),
            prometheus::Registry::new(),
            CancellationToken::new(),
        )
        .map_err(|e| e.to_string())?;
        Ok(Server {
            base: format!("http://{}", running.addr),
            running: Some(running),
            client: self.client.clone(),
        })
    }
}

struct Server {
    base: String,
    running: Option<Running>,
    client: reqwest::Client,
}

impl Server {
    async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut req = match method {
            "GET" => self.client.get(url),
            _ => self.client.post(url),
        };
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn raw_feed(&self) -> Vec<u8> {
        let res = self
            .client
            .get(format!("{}/v1/grants", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        res.bytes().await.unwrap().to_vec()
    }

    async fn decision(&self) -> String {
        let body = json!({"principal": ALICE, "action": PAY, "resource": WS1});
        let (status, answer) = self
            .call("POST", "/v1/is_authorized", None, Some(body))
            .await;
        assert_eq!(status, 200, "{answer}");
        answer["decision"].as_str().unwrap().to_owned()
    }

    async fn grants_status(&self) -> Value {
        let (_, status) = self.call("GET", "/v1/status", None, None).await;
        status["inputs"]["grants"].clone()
    }

    async fn metric(&self, series: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// alice asks for FinOps Manager on ws-1 and carol approves; the request id.
    async fn approved_grant(&self) -> String {
        let body = json!({"role": "FinOpsManager", "scope": WS1, "duration": "2h", "reason": "signed feed test"});
        let (status, created) = self
            .call("POST", "/v1/elevations", Some("alice-token"), Some(body))
            .await;
        assert!(status == 201 || status == 200, "{status} {created}");
        let id = created["id"].as_str().unwrap().to_owned();
        self.command(&id, "approve").await;
        id
    }

    async fn command(&self, id: &str, verb: &str) {
        let (status, answer) = self
            .call(
                "POST",
                &format!("/v1/elevations/{id}/{verb}"),
                Some("carol-token"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{verb}: {answer}");
    }
}

/// Polls `check` until it returns `Some`, or fails the test with `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn until_decision(server: &Server, want: &str) {
    eventually(want, || async {
        (server.decision().await == want).then_some(())
    })
    .await;
}

async fn until_error(server: &Server, needle: &str) -> String {
    eventually(needle, || async {
        let s = server.grants_status().await;
        s["last_error"]
            .as_str()
            .filter(|e| e.contains(needle))
            .map(str::to_owned)
    })
    .await
}

/// A feed server that answers every request with whatever `body` holds, no ETag, as
/// an attacker in the middle (or a stale cache) would.
struct FakeFeed {
    url: String,
    body: Arc<Mutex<Vec<u8>>>,
}

impl FakeFeed {
    async fn start(body: Vec<u8>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/grants", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(body));
        let serving = Arc::clone(&body);
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let body = serving.lock().unwrap().clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let header = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(header.as_bytes()).await;
                    let _ = socket.write_all(&body).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self { url, body }
    }

    fn serve(&self, body: Vec<u8>) {
        *self.body.lock().unwrap() = body;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_signed_feed_is_followed_over_http_and_from_the_file_and_another_key_is_refused() {
    let world = World::new();
    let id = world.key("workflow");
    world.key("stranger");
    let central = world.workflow(&["workflow"]).await;
    let url = format!("{}/v1/grants", central.base);
    let trusting = world
        .sidecar_following(&url, Duration::from_secs(60), &["workflow"])
        .await;
    let stranger = world
        .sidecar_following(&url, Duration::from_secs(60), &["stranger"])
        .await;
    let watching = world.sidecar_watching_file(&["workflow"]).await.unwrap();

    // What travels is the envelope, signed by the key keygen printed.
    let envelope: Value = serde_json::from_slice(&central.raw_feed().await).unwrap();
    assert_eq!(envelope["payloadType"], elevate::signing::PAYLOAD_TYPE);
    assert_eq!(envelope["signatures"][0]["keyid"], id.as_str());
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(world.feed_file()).unwrap()).unwrap();
    assert_eq!(on_disk["payloadType"], elevate::signing::PAYLOAD_TYPE);

    assert_eq!(trusting.decision().await, "Deny");
    central.approved_grant().await;
    until_decision(&trusting, "Allow").await;
    until_decision(&watching, "Allow").await;
    assert_eq!(trusting.grants_status().await["last_error"], Value::Null);

    // The sidecar that trusts another key never lets the grant in, and says why.
    let error = until_error(&stranger, "untrusted_key").await;
    assert!(error.contains(&id), "{error}");
    assert_eq!(stranger.decision().await, "Deny");
    assert!(
        stranger
            .metric("elevate_feed_rejected_total{reason=\"untrusted_key\"} ")
            .await
            >= 1.0
    );
    let (ready, _) = stranger.call("GET", "/readyz", None, None).await;
    assert_eq!(ready, 503, "never had a good feed");

    // A sidecar watching the file with the wrong key refuses to start on it.
    let refused = world
        .sidecar_watching_file(&["stranger"])
        .await
        .err()
        .unwrap();
    assert!(refused.contains("untrusted_key"), "{refused}");

    for s in [trusting, stranger, watching, central] {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replayed_older_signed_feed_is_refused_and_does_not_keep_the_feed_fresh() {
    let world = World::new();
    world.key("workflow");
    let central = world.workflow(&["workflow"]).await;
    let request = central.approved_grant().await;
    let with_grant = central.raw_feed().await;
    central.command(&request, "revoke").await;
    let revoked = central.raw_feed().await;
    assert_ne!(with_grant, revoked);

    let fake = FakeFeed::start(with_grant.clone()).await;
    let max_age = Duration::from_secs(2);
    let sidecar = world
        .sidecar_following(&fake.url, max_age, &["workflow"])
        .await;
    until_decision(&sidecar, "Allow").await;
    fake.serve(revoked);
    until_decision(&sidecar, "Deny").await;

    // The attacker replays the signed feed from before the revocation.
    fake.serve(with_grant);
    let error = until_error(&sidecar, "rollback").await;
    assert!(error.contains("older"), "{error}");
    assert_eq!(
        sidecar.decision().await,
        "Deny",
        "the revoked grant stays out"
    );
    assert!(
        sidecar
            .metric("elevate_feed_rejected_total{reason=\"rollback\"} ")
            .await
            >= 1.0
    );
    // Only the replay answers now, so the feed ages out: grants are suspended.
    eventually("the feed to go stale", || async {
        let (status, _) = sidecar.call("GET", "/readyz", None, None).await;
        (status == 503).then_some(())
    })
    .await;

    sidecar.stop().await;
    central.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn key_rotation_keeps_the_feed_flowing() {
    let world = World::new();
    world.key("old");
    world.key("new");
    let fake = FakeFeed::start(Vec::new()).await;
    let both = world
        .sidecar_following(&fake.url, Duration::from_secs(60), &["old", "new"])
        .await;
    let only_new = world
        .sidecar_following(&fake.url, Duration::from_secs(60), &["new"])
        .await;

    // Signed with the old key: the sidecar that trusts both follows.
    let central = world.workflow(&["old"]).await;
    let request = central.approved_grant().await;
    fake.serve(central.raw_feed().await);
    until_decision(&both, "Allow").await;
    until_error(&only_new, "untrusted_key").await;
    central.stop().await;

    // The transition: the workflow signs with both, so every sidecar follows.
    let central = world.workflow(&["old", "new"]).await;
    central.command(&request, "revoke").await;
    fake.serve(central.raw_feed().await);
    until_decision(&both, "Deny").await;
    eventually("the new-key sidecar to catch up", || async {
        let s = only_new.grants_status().await;
        (s["last_error"].is_null() && !s["revision"].is_null()).then_some(())
    })
    .await;
    central.stop().await;

    // The old key retired: documents signed with the new key alone keep flowing.
    let central = world.workflow(&["new"]).await;
    central.approved_grant().await;
    let envelope: Value = serde_json::from_slice(&central.raw_feed().await).unwrap();
    assert_eq!(envelope["signatures"].as_array().unwrap().len(), 1);
    fake.serve(central.raw_feed().await);
    until_decision(&both, "Allow").await;
    until_decision(&only_new, "Allow").await;

    for s in [both, only_new, central] {
        s.stop().await;
    }
}
