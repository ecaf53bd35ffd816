//! TLS and mTLS end to end, in real processes: a central `elevate serve --workflow`
//! over TLS with a client CA, the CLI talking to it over https with `--ca`, sidecars
//! following `--grants https://...` with and without a client certificate, and the
//! listener's certificate rotated and broken on disk while it serves.
//!
//! Every certificate is made here with rcgen: a server CA, a client CA for the
//! sidecars, and a rogue CA nobody trusts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_elevate");
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Generous: two cores are shared by parallel test binaries.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);

const ALICE: &str = "User::\"alice\"";
const WS1: &str = "Workspace::\"ws-1\"";
const PAY: &str = "Action::\"createPaymentMethod\"";

// ------------------------------------------------------------------ certificates

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate and its key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Leaf {
    fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert.as_bytes()).unwrap()
    }
}

/// A server certificate for `127.0.0.1`.
fn server_leaf(ca: &Ca, name: &str) -> Leaf {
    leaf(ca, name, ExtendedKeyUsagePurpose::ServerAuth)
}

fn client_leaf(ca: &Ca, name: &str) -> Leaf {
    leaf(ca, name, ExtendedKeyUsagePurpose::ClientAuth)
}

fn leaf(ca: &Ca, name: &str, usage: ExtendedKeyUsagePurpose) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, ca).unwrap();
    Leaf {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// Writes `text` to `path` by rename, as a deployment tool (or a ConfigMap) does, so
/// the server never reads half a file.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A rustls client config trusting `ca_pem`, presenting `identity` when given, with
/// `alpn` offered.
fn client_tls(ca_pem: &str, identity: Option<&Leaf>, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der()],
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

fn https(ca_pem: &str, identity: Option<&Leaf>) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_tls(ca_pem, identity, &[b"h2", b"http/1.1"]))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A TLS connection opened by hand, to see the certificate the server presents.
async fn handshake(
    addr: &str,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// The leaf certificate a new handshake presents.
async fn presented(addr: &str, trust: &str) -> CertificateDer<'static> {
    let stream = handshake(addr, client_tls(trust, None, &[])).await.unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// One HTTP/1.1 `GET /healthz` on an open connection; the status line.
async fn healthz_on<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

// ------------------------------------------------------------------ processes

/// `elevate serve`, killed when dropped; its stderr in `log`.
struct Server {
    child: Child,
    log: PathBuf,
    addr: String,
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts `elevate serve ARGS --listen 127.0.0.1:0` and reads its address from the
    /// `elevate serving listen=...` line.
    fn start(args: &[OsString], log: &Path) -> Self {
        let stderr = std::fs::File::create(log).unwrap();
        let child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("ELEVATE_CONFIG")
            .env_remove("ELEVATE_CA")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            log: log.to_owned(),
            addr: String::new(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        server.addr = loop {
            let text = server.log();
            if let Some(line) = text.lines().find(|l| l.contains("elevate serving")) {
                break line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("listen="))
                    .unwrap_or_else(|| panic!("no listen= in {line:?}"))
                    .to_owned();
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("server exited with {status} at start:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "no `elevate serving` line:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until it gives `Some`, or fails naming `what`.
async fn poll<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A CLI run: exit code, stdout, stderr.
fn cli(url: &str, ca: &Path, token: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("ELEVATE_CONFIG")
        .env("ELEVATE_URL", url)
        .env("ELEVATE_CA", ca)
        .env("ELEVATE_TOKEN", token)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ------------------------------------------------------------------ a test's world

/// The inputs, tokens and certificates of one test, in its own temp dir.
struct World {
    dir: TempDir,
    tokens: HashMap<&'static str, String>,
    server_ca: Ca,
    client_ca: Ca,
    rogue_ca: Ca,
}

impl World {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let policies = dir.path().join("policies");
        std::fs::create_dir_all(&policies).unwrap();
        for entry in std::fs::read_dir(root.join("policies")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "cedar") {
                std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
            }
        }
        std::fs::copy(
            root.join("schema/elevate.cedarschema"),
            dir.path().join("elevate.cedarschema"),
        )
        .unwrap();
        std::fs::copy(
            root.join("deploy/local/entities.json"),
            dir.path().join("entities.json"),
        )
        .unwrap();
        let mut tokens = HashMap::new();
        let mut entries = Vec::new();
        for (name, principal) in [
            ("alice", ALICE),
            ("carol", "User::\"carol\""),
            ("frank", "User::\"frank\""),
        ] {
            let token = format!("tls-{name}-{}-{}", std::process::id(), dir.path().display());
            let token = hex::encode(Sha256::digest(token.as_bytes()));
            entries.push(json!({
                "sha256": hex::encode(Sha256::digest(token.as_bytes())),
                "principal": principal,
            }));
            tokens.insert(name, token);
        }
        std::fs::write(
            dir.path().join("tokens.json"),
            Value::Array(entries).to_string(),
        )
        .unwrap();
        let world = Self {
            dir,
            tokens,
            server_ca: ca("elevate test server ca"),
            client_ca: ca("elevate test sidecar ca"),
            rogue_ca: ca("rogue ca"),
        };
        world.write("server-ca.crt", &world.server_ca.pem());
        world.write("client-ca.crt", &world.client_ca.pem());
        let server = server_leaf(&world.server_ca, "central");
        world.write("tls.crt", &server.cert);
        world.write("tls.key", &server.key);
        world
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn log(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}.log"))
    }

    fn inputs(&self) -> Vec<OsString> {
        let mut args = Vec::new();
        for (flag, name) in [
            ("--policies", "policies"),
            ("--schema", "elevate.cedarschema"),
            ("--entities", "entities.json"),
        ] {
            args.push(flag.into());
            args.push(self.path(name).into());
        }
        args
    }

    fn tls_args(&self, client_ca: bool) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--tls-cert".into(),
            self.path("tls.crt").into(),
            "--tls-key".into(),
            self.path("tls.key").into(),
        ];
        if client_ca {
            args.extend(["--tls-client-ca".into(), self.path("client-ca.crt").into()]);
        }
        args
    }

    /// The central: workflow, feed and decisions, over TLS with the sidecars' CA.
    fn central(&self) -> Server {
        let mut args = self.inputs();
        args.extend([
            "--workflow".into(),
            self.path("data").into(),
            "--tokens".into(),
            self.path("tokens.json").into(),
        ]);
        args.extend(self.tls_args(true));
        Server::start(&args, &self.log("central"))
    }

    /// A plain sidecar following the central's feed over https, presenting `identity`.
    fn sidecar(&self, central: &Server, name: &str, identity: Option<&Leaf>) -> Server {
        self.sidecar_with(central, name, identity, &[])
    }

    fn sidecar_with(
        &self,
        central: &Server,
        name: &str,
        identity: Option<&Leaf>,
        extra: &[&str],
    ) -> Server {
        let mut args = self.inputs();
        args.extend(extra.iter().map(OsString::from));
        args.extend([
            "--grants".into(),
            format!("https://{}/v1/grants", central.addr).into(),
            "--feed-ca".into(),
            self.path("server-ca.crt").into(),
        ]);
        if let Some(leaf) = identity {
            args.extend([
                "--feed-client-cert".into(),
                self.write(&format!("{name}.crt"), &leaf.cert).into(),
                "--feed-client-key".into(),
                self.write(&format!("{name}.key"), &leaf.key).into(),
            ]);
        }
        Server::start(&args, &self.log(name))
    }

    fn token(&self, name: &str) -> &str {
        &self.tokens[name]
    }
}

async fn decide(sidecar: &Server) -> Value {
    let body = json!({"principal": ALICE, "action": PAY, "resource": WS1});
    let response = reqwest::Client::new()
        .post(format!("http://{}/v1/is_authorized", sidecar.addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn ready(server: &Server) -> bool {
    reqwest::Client::new()
        .get(format!("http://{}/readyz", server.addr))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
}

// ------------------------------------------------------------------ tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_follows_an_https_feed_with_mtls_and_sees_a_grant_come_and_go() {
    let world = World::new();
    let central = world.central();
    let server_ca = world.server_ca.pem();
    let base = format!("https://{}", central.addr);
    assert!(central.log().contains("serving tls"), "{}", central.log());

    // The workflow's own routes need no client certificate; ALPN gives HTTP/2.
    let anonymous = https(&server_ca, None);
    let readyz = poll("the central to be ready over https", START_TIMEOUT, || {
        let anonymous = anonymous.clone();
        let url = format!("{base}/readyz");
        async move {
            anonymous
                .get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        }
    })
    .await;
    assert_eq!(readyz.version(), reqwest::Version::HTTP_2);

    // The feed does: none is a 403 that says so, one from the client CA is served.
    let refused = anonymous
        .get(format!("{base}/v1/grants"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["kind"], "forbidden", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("client certificate"),
        "{body}"
    );
    let sidecar_leaf = client_leaf(&world.client_ca, "sidecar-1");
    let with_cert = https(&server_ca, Some(&sidecar_leaf));
    let feed = with_cert
        .get(format!("{base}/v1/grants"))
        .send()
        .await
        .unwrap();
    assert_eq!(feed.status(), 200);
    let feed: Value = feed.json().await.unwrap();
    assert_eq!(feed["grants"], json!([]), "{feed}");

    // A certificate from another CA fails the handshake, on every route.
    let rogue = https(&server_ca, Some(&client_leaf(&world.rogue_ca, "sidecar-1")));
    for path in ["/v1/grants", "/healthz"] {
        let err = rogue.get(format!("{base}{path}")).send().await;
        assert!(
            err.is_err(),
            "{path}: a rogue certificate got an answer: {err:?}"
        );
    }
    // So does a client that does not trust the server's CA, and plain HTTP gets no
    // answer from the TLS port.
    let stranger = https(&world.rogue_ca.pem(), None);
    assert!(
        stranger
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_err()
    );
    let plain = reqwest::Client::new()
        .get(format!("http://{}/healthz", central.addr))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| r.status() != 200));

    // Sidecars: one with a client certificate, one without, one with a rogue one.
    let sidecar = world.sidecar(&central, "sidecar", Some(&sidecar_leaf));
    let no_cert = world.sidecar(&central, "no-cert", None);
    let rogue_leaf = client_leaf(&world.rogue_ca, "rogue");
    let rogue_sidecar = world.sidecar(&central, "rogue", Some(&rogue_leaf));
    poll("the mTLS sidecar to be ready", START_TIMEOUT, || async {
        ready(&sidecar).await.then_some(())
    })
    .await;
    assert_eq!(decide(&sidecar).await["decision"], "Deny");

    // Request and approve over https with `ELEVATE_CA`; no client certificate.
    let ca_file = world.path("server-ca.crt");
    let (code, out, err) = cli(
        &base,
        &ca_file,
        world.token("alice"),
        &[
            "request",
            "--role",
            "FinOpsManager",
            "--scope",
            WS1,
            "--for",
            "2h",
            "--reason",
            "month-end over tls",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let id = out.split_whitespace().next().unwrap().to_owned();
    let (code, out, err) = cli(&base, &ca_file, world.token("carol"), &["approve", &id]);
    assert_eq!(code, 0, "{out}{err}");
    let allowed = poll("the sidecar to allow", CHANGE_TIMEOUT, || async {
        let answer = decide(&sidecar).await;
        (answer["decision"] == "Allow").then_some(answer)
    })
    .await;
    assert_eq!(
        allowed["grants"],
        json!([id.replace("r-", "g-")]),
        "{allowed}"
    );

    let (code, out, err) = cli(&base, &ca_file, world.token("frank"), &["revoke", &id]);
    assert_eq!(code, 0, "{out}{err}");
    poll(
        "the sidecar to deny after the revocation",
        CHANGE_TIMEOUT,
        || async { (decide(&sidecar).await["decision"] == "Deny").then_some(()) },
    )
    .await;

    // The CLI without the private CA does not trust the server.
    let out = Command::new(BIN)
        .args(["show", &id])
        .env_remove("ELEVATE_CA")
        .env_remove("ELEVATE_CONFIG")
        .env("ELEVATE_URL", &base)
        .env("ELEVATE_TOKEN", world.token("alice"))
        .env("SSL_CERT_FILE", world.path("client-ca.crt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach"), "{stderr}");

    // The sidecars the central refused never got grants, and say why.
    for (server, needle) in [
        (&no_cert, "403"),
        (&rogue_sidecar, "grant feed fetch failed"),
    ] {
        assert!(
            !ready(server).await,
            "{} is ready:\n{}",
            server.log.display(),
            server.log()
        );
        let log = poll(
            "the refusal in the sidecar's log",
            CHANGE_TIMEOUT,
            || async {
                let log = server.log();
                log.contains(needle).then_some(log)
            },
        )
        .await;
        assert!(log.contains("grant feed fetch failed"), "{log}");
    }
    assert_eq!(decide(&no_cert).await["decision"], "Deny");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_reaches_new_handshakes_and_a_broken_one_keeps_the_last_good() {
    let world = World::new();
    let grants = world.write(
        "grants.json",
        r#"{"revision": "1", "generated_at": "2026-01-01T00:00:00Z", "grants": []}"#,
    );
    let mut args = world.inputs();
    args.extend(["--grants".into(), grants.into()]);
    args.extend(world.tls_args(false));
    args.extend([
        "--debounce-ms".into(),
        "50".into(),
        "--rescan-ms".into(),
        "500".into(),
    ]);
    let server = Server::start(&args, &world.log("rotating"));
    let addr = server.addr.clone();
    let original = CertificateDer::from_pem_slice(
        std::fs::read_to_string(world.path("tls.crt"))
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    // Trust the old and the new server CA, as a client does during a CA rotation.
    let next_ca = ca("next server ca");
    let trust = format!("{}{}", world.server_ca.pem(), next_ca.pem());
    let first = poll("the first handshake", START_TIMEOUT, || {
        let (addr, trust) = (addr.clone(), trust.clone());
        async move {
            let stream = handshake(&addr, client_tls(&trust, None, &[])).await.ok()?;
            Some(stream.get_ref().1.peer_certificates()?[0].clone())
        }
    })
    .await;
    assert_eq!(first, original);

    // A connection opened before the rotation, kept open across it.
    let mut kept = handshake(&addr, client_tls(&trust, None, &[]))
        .await
        .unwrap();
    assert_eq!(healthz_on(&mut kept).await, "HTTP/1.1 200 OK");

    // The key first, then the certificate: in between the pair does not match, and
    // that half-written state must not replace the good one either.
    let rotated = server_leaf(&next_ca, "central, rotated");
    replace(&world.path("tls.key"), &rotated.key);
    replace(&world.path("tls.crt"), &rotated.cert);
    poll(
        "new handshakes to present the rotated certificate",
        CHANGE_TIMEOUT,
        || async { (presented(&addr, &trust).await == rotated.der()).then_some(()) },
    )
    .await;
    assert_eq!(
        healthz_on(&mut kept).await,
        "HTTP/1.1 200 OK",
        "the connection from before the rotation was dropped"
    );
    let metrics = |outcome: &'static str| {
        let addr = addr.clone();
        let client = https(&trust, None);
        async move {
            let text = client
                .get(format!("https://{addr}/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let prefix = format!("elevate_tls_reload_total{{outcome=\"{outcome}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
                .parse::<u64>()
                .unwrap()
        }
    };
    assert!(metrics("ok").await >= 1);

    // A broken certificate: logged, counted, and the rotated one stays.
    let errors_before = metrics("error").await;
    replace(
        &world.path("tls.crt"),
        "-----BEGIN CERTIFICATE-----\nbroken\n",
    );
    poll(
        "the failed reload to be counted",
        CHANGE_TIMEOUT,
        || async { (metrics("error").await > errors_before).then_some(()) },
    )
    .await;
    assert_eq!(presented(&addr, &trust).await, rotated.der());
    let log = server.log();
    assert!(log.contains("tls reload failed"), "{log}");
    assert!(log.contains("tls.crt"), "{log}");
    let status: Value = https(&trust, None)
        .get(format!("https://{addr}/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tls = &status["tls"];
    assert!(
        tls["last_error"].as_str().unwrap().contains("tls.crt"),
        "{status}"
    );
    assert!(tls["reloads"].as_u64().unwrap() >= 1, "{status}");
    assert!(tls["failures"].as_u64().unwrap() >= 1, "{status}");

    // A certificate whose key is elsewhere: refused as well.
    let stray = server_leaf(&next_ca, "stray");
    let errors_before = metrics("error").await;
    replace(&world.path("tls.crt"), &stray.cert);
    poll(
        "the mismatched pair to be refused",
        CHANGE_TIMEOUT,
        || async { (metrics("error").await > errors_before).then_some(()) },
    )
    .await;
    assert_eq!(presented(&addr, &trust).await, rotated.der());

    // Fixed: served again without a restart.
    replace(&world.path("tls.key"), &stray.key);
    poll("the repaired pair to be served", CHANGE_TIMEOUT, || async {
        (presented(&addr, &trust).await == stray.der()).then_some(())
    })
    .await;
}

#[test]
fn bad_tls_settings_stop_the_server_with_a_message() {
    let world = World::new();
    let grants = world.write(
        "grants.json",
        r#"{"revision": "1", "generated_at": "2026-01-01T00:00:00Z", "grants": []}"#,
    );
    let run_with = |grants: Option<&Path>, extra: &[OsString]| {
        let mut args = world.inputs();
        if let Some(grants) = grants {
            args.extend(["--grants".into(), grants.into()]);
        }
        args.extend(extra.iter().cloned());
        let out = Command::new(BIN)
            .arg("serve")
            .args(&args)
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("ELEVATE_CONFIG")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let run = |extra: &[OsString]| run_with(Some(&grants), extra);
    let (code, err) = run(&["--tls-cert".into(), world.path("tls.crt").into()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("`--tls-cert` needs `--tls-key`"), "{err}");

    let (code, err) = run(&[
        "--tls-cert".into(),
        world.path("absent.crt").into(),
        "--tls-key".into(),
        world.path("tls.key").into(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("cannot read") && err.contains("absent.crt"),
        "{err}"
    );

    let other = server_leaf(&world.rogue_ca, "other");
    let (code, err) = run(&[
        "--tls-cert".into(),
        world.path("tls.crt").into(),
        "--tls-key".into(),
        world.write("other.key", &other.key).into(),
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("other.key"), "{err}");

    let (code, err) = run_with(
        None,
        &[
            "--grants-url".into(),
            "http://192.0.2.1:8180/v1/grants".into(),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--allow-insecure-feed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_handshake_is_cut_off() {
    let world = World::new();
    let grants = world.write(
        "grants.json",
        r#"{"revision": "1", "generated_at": "2026-01-01T00:00:00Z", "grants": []}"#,
    );
    let mut args = world.inputs();
    args.extend(["--grants".into(), grants.into()]);
    args.extend(world.tls_args(false));
    // Only the handshake's own bound can end this connection.
    args.extend([
        "--idle-timeout-ms".into(),
        "600000".into(),
        "--header-timeout-ms".into(),
        "600000".into(),
    ]);
    let server = Server::start(&args, &world.log("silent"));
    let mut silent = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(
        elevate::tls::HANDSHAKE_TIMEOUT + CHANGE_TIMEOUT,
        silent.read(&mut buf),
    )
    .await
    .expect("the server kept a silent connection past its handshake timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // The listener itself is fine.
    let ok = https(&world.server_ca.pem(), None)
        .get(format!("https://{}/healthz", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_picks_up_a_rotated_client_certificate_without_a_restart() {
    let world = World::new();
    let central = world.central();
    let leaf = client_leaf(&world.client_ca, "sidecar");
    // A short feed age, so the long-poll is short (2 s) and a stale feed shows soon.
    let sidecar = world.sidecar_with(
        &central,
        "rotating",
        Some(&leaf),
        &["--max-feed-age-ms", "4000"],
    );
    poll("the sidecar to be ready", START_TIMEOUT, || async {
        ready(&sidecar).await.then_some(())
    })
    .await;

    // A certificate the central does not trust: the next connection is refused, the
    // feed goes stale, and the sidecar says so.
    let rogue = client_leaf(&world.rogue_ca, "sidecar");
    replace(&world.path("rotating.key"), &rogue.key);
    replace(&world.path("rotating.crt"), &rogue.cert);
    poll(
        "the rogue certificate to be used and refused",
        CHANGE_TIMEOUT,
        || async { (!ready(&sidecar).await).then_some(()) },
    )
    .await;
    let log = sidecar.log();
    assert!(log.contains("grant feed tls files changed"), "{log}");
    assert!(log.contains("grant feed fetch failed"), "{log}");

    // A new certificate from the right CA: following again, same process.
    let renewed = client_leaf(&world.client_ca, "sidecar, renewed");
    replace(&world.path("rotating.key"), &renewed.key);
    replace(&world.path("rotating.crt"), &renewed.cert);
    poll(
        "the renewed certificate to be accepted",
        CHANGE_TIMEOUT,
        || async { ready(&sidecar).await.then_some(()) },
    )
    .await;
    assert!(
        sidecar.log().contains("grant feed answers again"),
        "{}",
        sidecar.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_an_alpn_h2_connection_is_never_head_timed_and_an_http1_half_head_is() {
    use http_body_util::BodyExt;
    let world = World::new();
    let grants = world.write(
        "grants.json",
        r#"{"revision": "1", "generated_at": "2026-01-01T00:00:00Z", "grants": []}"#,
    );
    let mut args = world.inputs();
    args.extend(["--grants".into(), grants.into()]);
    args.extend(world.tls_args(false));
    // Closes within seconds can only be the head deadline's.
    args.extend([
        "--header-timeout-ms".into(),
        "300".into(),
        "--idle-timeout-ms".into(),
        "60000".into(),
    ]);
    let server = Server::start(&args, &world.log("head-timer"));
    let trust = world.server_ca.pem();

    // h2 by ALPN on one connection that pings while idle, waiting three header timeouts
    // between requests: every request is answered on it.
    let tls = handshake(&server.addr, client_tls(&trust, None, &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(100))
            .keep_alive_while_idle(true)
            .handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    for n in 0..3 {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(900)).await;
        }
        let request = hyper::Request::get(format!("https://{}/healthz", server.addr))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = tokio::time::timeout(CHANGE_TIMEOUT, sender.send_request(request))
            .await
            .expect("an answer in time")
            .unwrap_or_else(|e| panic!("request {n} on the h2 connection failed: {e}"));
        assert_eq!(response.version(), hyper::Version::HTTP_2);
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("alive"));
    }

    // HTTP/1.1 by ALPN: the timer sees the decrypted bytes. One request served, a wait
    // past the header timeout (allowed), then half a head and a stall (closed).
    let mut h1 = handshake(&server.addr, client_tls(&trust, None, &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(healthz_on(&mut h1).await, "HTTP/1.1 200 OK");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(healthz_on(&mut h1).await, "HTTP/1.1 200 OK");
    h1.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(CHANGE_TIMEOUT, h1.read(&mut buf))
        .await
        .expect("a stalled head over tls kept its connection open");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}
