//! TLS with rustls (the `ring` provider): the API listener's certificate, key and
//! optional client CA, reloaded from disk without a restart, and the client side
//! (whom the feed fetcher and the CLI trust, and the certificate they present).
//!
//! * The server's whole `rustls::ServerConfig` sits behind an `ArcSwap`: every new
//!   handshake loads the current one, a connection keeps the one it started with, so
//!   a reload never touches a connection in flight.
//! * A reload reads the three files again, builds a complete candidate (chain parsed,
//!   key matching the leaf, CA usable) and swaps it in only then. A bad candidate
//!   keeps the old configuration, is logged with its cause and counted as
//!   `elevate_tls_reload_total{outcome="error"}`.
//! * With a client CA, a client certificate is optional at the handshake (a sidecar
//!   presents one, a person with a bearer token need not), but a certificate that does
//!   not chain to the CA fails the handshake. [`TlsPeer`] tells the routes which kind
//!   of connection a request came on; `GET /v1/grants` refuses one without a
//!   verified certificate.
//!
//! `ring` rather than `aws-lc-rs`: it builds with a C compiler alone (no cmake, no
//! Go), quickly, and covers what this needs: TLS 1.2 and 1.3 with ECDSA, Ed25519 and
//! RSA certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use prometheus::{IntCounterVec, Opts, Registry};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::{ClientTlsConfig, ServerTlsConfig};

mod stream;
pub use stream::{Conn, HANDSHAKE_TIMEOUT};

/// The protocols offered by ALPN, preferred first; the server speaks both.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not PEM: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("`{path}` holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("`{path}` holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("CA file `{path}` is unusable: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("certificate `{cert}` and key `{key}`: {source}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot load the system's trusted roots: {0}")]
    SystemRoots(String),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider every config here is built with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file, in order (a chain is leaf first).
fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        e => TlsError::Pem {
            path: path.to_owned(),
            message: e.to_string(),
        },
    })
}

/// A root store holding every certificate of a CA file.
fn roots(path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path, pem)? {
        store.add(cert).map_err(|e| TlsError::Ca {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    }
    Ok(store)
}

/// The files of a server configuration, read once, so one read is both parsed and
/// hashed (a rescan that finds the same bytes changes nothing).
struct ServerFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl ServerFiles {
    fn read(config: &ServerTlsConfig) -> Result<Self, TlsError> {
        Ok(Self {
            cert: read(&config.cert)?,
            key: read(&config.key)?,
            client_ca: config.client_ca.as_deref().map(read).transpose()?,
        })
    }

    fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in [&self.cert, &self.key] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        if let Some(ca) = &self.client_ca {
            hasher.update(ca);
        }
        hasher.finalize().into()
    }

    fn build(&self, config: &ServerTlsConfig) -> Result<rustls::ServerConfig, TlsError> {
        let provider = provider();
        let chain = certificates(&config.cert, &self.cert)?;
        let key = private_key(&config.key, &self.key)?;
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?;
        let builder = match (&config.client_ca, &self.client_ca) {
            (Some(path), Some(pem)) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(path, pem)?),
                    provider,
                )
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Ca {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut server = builder
            .with_single_cert(chain, key)
            .map_err(|source| TlsError::Pair {
                cert: config.cert.clone(),
                key: config.key.clone(),
                source,
            })?;
        server.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(server)
    }
}

/// What a TLS connection established, in every request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsPeer {
    /// The listener verifies client certificates (`--tls-client-ca`).
    pub client_ca: bool,
    /// The client presented a certificate that chains to that CA.
    pub client_verified: bool,
}

impl TlsPeer {
    /// Whether the grant feed may be served on this connection: with a client CA
    /// configured, only to a client that proved it holds a certificate from it.
    pub fn may_read_feed(&self) -> bool {
        !self.client_ca || self.client_verified
    }
}

/// The per-connection slot a handshake fills in. It exists from the accept on, so a
/// request can never see "no TLS facts" on a TLS connection and fail open.
#[derive(Debug)]
pub struct PeerState {
    client_ca: bool,
    client_verified: AtomicBool,
}

impl PeerState {
    fn new(client_ca: bool) -> Self {
        Self {
            client_ca,
            client_verified: AtomicBool::new(false),
        }
    }

    fn verified(&self) {
        self.client_verified.store(true, Ordering::Release);
    }

    /// The facts as of now; final once the handshake is done, which hyper waits for
    /// before it reads a request.
    pub fn peer(&self) -> TlsPeer {
        TlsPeer {
            client_ca: self.client_ca,
            client_verified: self.client_verified.load(Ordering::Acquire),
        }
    }
}

/// The listener's TLS: the live configuration and how it is reloaded.
pub struct ServerTls {
    config: ServerTlsConfig,
    /// Swapped whole by the reloader; loaded once per handshake.
    current: ArcSwap<rustls::ServerConfig>,
    /// The digest of the files behind `current`, and what `/v1/status` shows. Locked
    /// by the reloader and by status reads, never across an await or a file read.
    state: std::sync::Mutex<ReloadState>,
    reloads: IntCounterVec,
}

struct ReloadState {
    digest: [u8; 32],
    status: TlsStatus,
}

/// The listener's TLS in `/v1/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TlsStatus {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    /// When the files behind the live configuration were loaded.
    pub last_reload: jiff::Timestamp,
    pub last_attempt: Option<jiff::Timestamp>,
    /// Why the last attempt kept the previous configuration; cleared by a good one.
    pub last_error: Option<String>,
    pub reloads: u64,
    pub failures: u64,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloaded {
    Changed,
    Unchanged,
    Rejected,
}

impl ServerTls {
    /// Loads the files (a bad one is fatal at startup) and registers the reload
    /// counter on `registry`.
    ///
    /// # Errors
    /// A file cannot be read or used, or the counter cannot be registered.
    pub fn load(config: ServerTlsConfig, registry: &Registry) -> Result<Arc<Self>, LoadError> {
        let files = ServerFiles::read(&config)?;
        let server = files.build(&config)?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "elevate_tls_reload_total",
                "Reloads of the TLS certificate, key and client CA by outcome",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        for outcome in ["ok", "error"] {
            reloads.with_label_values(&[outcome]);
        }
        let status = TlsStatus {
            cert: config.cert.clone(),
            key: config.key.clone(),
            client_ca: config.client_ca.clone(),
            last_reload: jiff::Timestamp::now(),
            last_attempt: None,
            last_error: None,
            reloads: 0,
            failures: 0,
        };
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(server),
            state: std::sync::Mutex::new(ReloadState {
                digest: files.digest(),
                status,
            }),
            config,
            reloads,
        }))
    }

    /// The configuration a new handshake uses.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.current.load_full()
    }

    /// Whether client certificates are verified (`--tls-client-ca`).
    pub fn has_client_ca(&self) -> bool {
        self.config.client_ca.is_some()
    }

    /// A fresh per-connection slot for the handshake's facts.
    pub fn peer_state(&self) -> Arc<PeerState> {
        Arc::new(PeerState::new(self.has_client_ca()))
    }

    /// What `/v1/status` shows.
    pub fn status(&self) -> Option<TlsStatus> {
        self.state.lock().ok().map(|s| s.status.clone())
    }

    /// Reads the files again; swaps in a complete new configuration, or keeps the old
    /// one and says why.
    pub fn reload(&self) -> Reloaded {
        let built = ServerFiles::read(&self.config).and_then(|files| {
            let digest = files.digest();
            let unchanged = self.state.lock().is_ok_and(|s| s.digest == digest);
            if unchanged {
                return Ok(None);
            }
            files
                .build(&self.config)
                .map(|server| Some((server, digest)))
        });
        let now = jiff::Timestamp::now();
        let mut guard = self.state.lock().ok();
        let state = guard.as_deref_mut();
        let outcome = match built {
            Ok(None) => {
                if let Some(state) = state {
                    state.status.last_attempt = Some(now);
                    state.status.last_error = None;
                }
                Reloaded::Unchanged
            }
            Ok(Some((server, digest))) => {
                self.current.store(Arc::new(server));
                if let Some(state) = state {
                    state.digest = digest;
                    state.status.last_attempt = Some(now);
                    state.status.last_reload = now;
                    state.status.last_error = None;
                    state.status.reloads = state.status.reloads.saturating_add(1);
                }
                self.reloads.with_label_values(&["ok"]).inc();
                tracing::info!(cert = %self.config.cert.display(), "tls certificate reloaded; new handshakes use it");
                Reloaded::Changed
            }
            Err(err) => {
                if let Some(state) = state {
                    state.status.last_attempt = Some(now);
                    state.status.last_error = Some(err.to_string());
                    state.status.failures = state.status.failures.saturating_add(1);
                }
                self.reloads.with_label_values(&["error"]).inc();
                tracing::error!(error = %err, "tls reload failed; new handshakes keep the previous certificate");
                Reloaded::Rejected
            }
        };
        drop(guard);
        outcome
    }

    /// Watches the directories of the files (editors and Kubernetes replace files by
    /// rename or symlink swap), debounces, rescans on a timer, and reloads.
    ///
    /// # Errors
    /// The watcher cannot be set up.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        cancel: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
        let files: Vec<&Path> = [Some(&self.config.cert), Some(&self.config.key)]
            .into_iter()
            .chain([self.config.client_ca.as_ref()])
            .flatten()
            .map(PathBuf::as_path)
            .collect();
        let tls = Arc::clone(self);
        crate::watch::spawn(
            &files,
            self.config.reload.debounce,
            self.config.reload.rescan,
            cancel,
            move || {
                tls.reload();
            },
        )
    }
}

/// Why the listener's TLS could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A client configuration: the CA file's certificates only, or the system's roots,
/// and the client certificate when one is named. No ALPN: the callers speak HTTP/1.1.
///
/// # Errors
/// A file cannot be read or used, or no system root can be loaded.
pub fn client_config(config: &ClientTlsConfig) -> Result<rustls::ClientConfig, TlsError> {
    let roots = match &config.ca {
        // A private CA replaces the system roots: a public CA has no say over who may
        // serve the grant feed.
        Some(path) => roots(path, &read(path)?)?,
        None => system_roots()?,
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match &config.identity {
        Some((cert, key)) => {
            let chain = certificates(cert, &read(cert)?)?;
            let private = private_key(key, &read(key)?)?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|source| TlsError::Pair {
                    cert: cert.clone(),
                    key: key.clone(),
                    source,
                })?
        }
        None => builder.with_no_client_auth(),
    })
}

/// The operating system's trusted roots; certificates it cannot parse are skipped.
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_owned(), ToString::to_string);
        return Err(TlsError::SystemRoots(why));
    }
    Ok(store)
}

/// A digest of the client's files, to notice a rotated client certificate.
///
/// # Errors
/// A file cannot be read.
pub fn client_files_digest(config: &ClientTlsConfig) -> Result<[u8; 32], TlsError> {
    let mut hasher = Sha256::new();
    let paths = config
        .ca
        .iter()
        .chain(config.identity.iter().flat_map(|(c, k)| [c, k]));
    for path in paths {
        let bytes = read(path)?;
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests;
