//! The gateway adapter: what lets nginx `auth_request`, Caddy `forward_auth` and
//! AuthZEN clients ask elevate without building a Cedar request themselves. It owns
//! the hot-reloaded route table (`--routes`), reading the original request and the
//! principal from the gateway's headers, and turning a matched route into the same
//! request body `/v1/is_authorized` takes, so both paths decide identically.
//!
//! INVARIANT: a published [`RouteTable`] is never mutated. A reload reads the file
//! again, builds a whole candidate checked against the live schema and swaps it in
//! only if every route is valid; a bad file (or a schema change that a route no
//! longer fits) keeps the last good table and is recorded in
//! [`RoutesStatus::last_error`], `/v1/status` and `elevate_reload_total{input="routes"}`.
//! At startup a bad table is fatal. The JWT key set ([`jwt`]) is reloaded the
//! same way, by the same watcher.
//!
//! Trust: every header read here (principal, original method and URI, client IP) is
//! believed because only the gateway reaches elevate and the gateway overwrites
//! those headers on every request. elevate listens on loopback by default; exposing
//! it, or a gateway that passes a client's copy of one of them through, hands the
//! decision to the client.

pub mod authzen;
pub mod jwt;
pub mod origin;
pub mod principal;
pub mod table;

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use cedar_policy::{EntityTypeName, EntityUid};
use hyper::HeaderMap;
use hyper::header::HeaderName;
use jiff::Timestamp;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::config::ReloadConfig;
use crate::entities::EntityStore;
use crate::metrics::Metrics;
use crate::request::Body;
use crate::snapshot::Store;

pub use origin::{ClientIpError, OriginError, Original, PathError};
pub use principal::PrincipalError;
pub use table::{Matched, Route, RouteTable, TableError};

/// The header a gateway puts the authenticated principal in, unless configured.
pub const DEFAULT_PRINCIPAL_HEADER: &str = "x-auth-principal";
/// The entity type of a bare principal id (`alice` → `User::"alice"`).
pub const DEFAULT_PRINCIPAL_TYPE: &str = "User";

/// How the gateway endpoints read a request.
#[derive(Debug, Clone)]
pub struct Config {
    /// The route table file (TOML), hot-reloaded.
    pub routes: PathBuf,
    pub principal_header: HeaderName,
    pub principal_type: EntityTypeName,
    /// Take the client IP from this header (set by the gateway) instead of the peer.
    pub client_ip_header: Option<HeaderName>,
    /// Principals from bearer JWTs instead of `principal_header`, when set.
    pub jwt: Option<jwt::Config>,
    pub reload: ReloadConfig,
}

/// A route table file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    #[error("cannot read route table `{path}`: {source}", path = .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("route table `{path}`: {source}", path = .path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: Box<TableError>,
    },
    #[error("route table `{path}`: not UTF-8 text", path = .path.display())]
    NotUtf8 { path: PathBuf },
    /// The gateway's other file, read with the table at startup.
    #[error(transparent)]
    JwtKeys(#[from] jwt::KeysError),
}

/// Reload bookkeeping of the route table, as `/v1/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoutesStatus {
    pub path: PathBuf,
    /// Routes in the live table.
    pub routes: usize,
    /// Content hash of the live table's file.
    pub revision: String,
    /// The schema revision the live table was checked against.
    pub schema_revision: Option<String>,
    /// The last time a table went live (the first load counts).
    pub last_reload: Timestamp,
    /// Why the file on disk (or the live schema) is not what the live table was
    /// built from, if it is not.
    pub last_error: Option<String>,
    pub reloads: u64,
    /// Distinct bad versions seen (the same bad content counts once).
    pub failures: u64,
    /// The header the principal is read from; `null` with a JWT key set, which is
    /// then the only source.
    pub principal_header: Option<String>,
    pub principal_type: String,
    pub client_ip_header: Option<String>,
    /// The JWT key set's reload status, when principals come from bearer tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<jwt::KeysStatus>,
}

/// What the last failed reload saw, so the same failure is logged and counted once.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fingerprint {
    Content([u8; 32], Option<String>),
    Unreadable(io::ErrorKind),
}

#[derive(Debug)]
struct ReloadState {
    live_hash: [u8; 32],
    failed: Option<Fingerprint>,
    status: RoutesStatus,
}

/// The live route table and the settings the gateway endpoints read requests with.
pub struct Gateway {
    config: Config,
    /// Read lock-free by every request; written only by `reload`, under `state`.
    table: ArcSwap<RouteTable>,
    /// One reload at a time. A std `Mutex`: held for a file read and a parse, never
    /// across an `.await`; requests never take it.
    state: Mutex<ReloadState>,
    /// Where the schema comes from: routes are checked against the live one.
    store: Arc<Store>,
    /// The JWT key set, when principals come from bearer tokens.
    jwt: Option<jwt::Keys>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("routes", &self.config.routes)
            .field("entries", &self.table.load().len())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Loads the route table against the store's schema; at startup a bad table is fatal.
    ///
    /// # Errors
    /// The file cannot be read or is not a valid route table.
    pub fn load(
        config: Config,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, RoutesError> {
        let bytes = std::fs::read(&config.routes).map_err(|source| RoutesError::Read {
            path: config.routes.clone(),
            source,
        })?;
        let snapshot = store.current();
        let table = parse_file(&config.routes, &bytes, snapshot.bundle.schema.as_ref())?;
        let jwt = config
            .jwt
            .clone()
            .map(|c| jwt::Keys::load(c, Arc::clone(&metrics)))
            .transpose()?;
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        tracing::info!(
            path = %config.routes.display(),
            routes = table.len(),
            "loaded the gateway route table"
        );
        metrics.register_routes_input();
        let status = RoutesStatus {
            path: config.routes.clone(),
            routes: table.len(),
            revision: short_hex(&hash),
            schema_revision: snapshot.revisions.schema.clone(),
            last_reload: Timestamp::now(),
            last_error: None,
            reloads: 1,
            failures: 0,
            principal_header: jwt.is_none().then(|| config.principal_header.to_string()),
            principal_type: config.principal_type.to_string(),
            client_ip_header: config.client_ip_header.as_ref().map(ToString::to_string),
            jwt: None,
        };
        drop(snapshot);
        Ok(Arc::new(Self {
            config,
            table: ArcSwap::from_pointee(table),
            state: Mutex::new(ReloadState {
                live_hash: hash,
                failed: None,
                status,
            }),
            store,
            jwt,
            metrics,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The JWT key set, when principals come from bearer tokens.
    pub fn jwt(&self) -> Option<&jwt::Keys> {
        self.jwt.as_ref()
    }

    /// The principal of a gateway request: from its bearer JWT when a key set is
    /// configured (and then only from it), else from the principal header.
    ///
    /// # Errors
    /// No principal can be established: the answer is 401.
    pub fn principal(
        &self,
        headers: &HeaderMap,
        now: Timestamp,
    ) -> Result<EntityUid, PrincipalFailure> {
        match &self.jwt {
            Some(keys) => keys
                .authenticate(headers, &self.config.principal_type, now)
                .map_err(PrincipalFailure::Token),
            None => principal::parse_principal(
                headers,
                &self.config.principal_header,
                &self.config.principal_type,
            )
            .map_err(PrincipalFailure::Header),
        }
    }

    /// The live table; hold the `Arc` for the whole request.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Reads the file again and checks it against the live schema; returns whether a
    /// new table went live. The same content and schema is a no-op; a failure keeps
    /// the last good table and records the error.
    pub fn reload(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let path = &self.config.routes;
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(source) => {
                let fingerprint = Fingerprint::Unreadable(source.kind());
                let err = RoutesError::Read {
                    path: path.clone(),
                    source,
                };
                self.failed(&mut state, fingerprint, &err);
                return false;
            }
        };
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        let snapshot = self.store.current();
        let schema_revision = snapshot.revisions.schema.clone();
        if hash == state.live_hash && schema_revision == state.status.schema_revision {
            // Back to what the live table was built from: nothing to report.
            state.failed = None;
            state.status.last_error = None;
            return false;
        }
        let fingerprint = Fingerprint::Content(hash, schema_revision.clone());
        if state.failed.as_ref() == Some(&fingerprint) {
            return false;
        }
        match parse_file(path, &bytes, snapshot.bundle.schema.as_ref()) {
            Ok(table) => {
                tracing::info!(
                    path = %path.display(),
                    routes = table.len(),
                    "reloaded the gateway route table"
                );
                let routes = table.len();
                self.table.store(Arc::new(table));
                self.metrics.routes_reload(true);
                state.live_hash = hash;
                state.failed = None;
                let status = &mut state.status;
                status.routes = routes;
                status.revision = short_hex(&hash);
                status.schema_revision = schema_revision;
                status.last_reload = Timestamp::now();
                status.last_error = None;
                status.reloads += 1;
                true
            }
            Err(err) => {
                self.failed(&mut state, fingerprint, &err);
                false
            }
        }
    }

    fn failed(&self, state: &mut ReloadState, fingerprint: Fingerprint, err: &RoutesError) {
        if state.failed.as_ref() == Some(&fingerprint) {
            return;
        }
        tracing::warn!(
            path = %self.config.routes.display(),
            error = %err,
            "route table not reloaded; keeping the last good table"
        );
        self.metrics.routes_reload(false);
        state.failed = Some(fingerprint);
        state.status.last_error = Some(err.to_string());
        state.status.failures += 1;
    }

    /// Reload status, for `/v1/status`.
    pub fn status(&self) -> RoutesStatus {
        let mut status = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .status
            .clone();
        status.jwt = self.jwt.as_ref().map(jwt::Keys::status);
        status
    }

    /// Watches the route table's directory (and the JWT key set's) and rescans on a
    /// timer; reloads both until `cancel`.
    ///
    /// As the other inputs: the directory, not the file (editors and ConfigMaps
    /// replace files by rename or symlink swap), events only signal, and the files
    /// are read again after the debounce. The rescan also catches a schema reload
    /// that a route no longer fits.
    ///
    /// # Errors
    /// The watcher cannot be created or the directory cannot be watched.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        cancel: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
        let files: Vec<&Path> = std::iter::once(self.config.routes.as_path())
            .chain(self.config.jwt.as_ref().map(|j| j.keys.as_path()))
            .collect();
        let gateway = Arc::clone(self);
        crate::watch::spawn(
            &files,
            self.config.reload.debounce,
            self.config.reload.rescan,
            cancel,
            move || {
                // Each is a no-op when its file is unchanged.
                gateway.reload();
                if let Some(keys) = &gateway.jwt {
                    keys.reload();
                }
            },
        )
    }
}

fn parse_file(
    path: &Path,
    bytes: &[u8],
    schema: Option<&cedar_policy::Schema>,
) -> Result<RouteTable, RoutesError> {
    let text = std::str::from_utf8(bytes).map_err(|_| RoutesError::NotUtf8 {
        path: path.to_path_buf(),
    })?;
    RouteTable::parse(text, schema).map_err(|source| RoutesError::Invalid {
        path: path.to_path_buf(),
        source: Box::new(source),
    })
}

/// Why a gateway request has no principal: the answer is 401 either way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrincipalFailure {
    #[error(transparent)]
    Header(PrincipalError),
    #[error(transparent)]
    Token(jwt::TokenError),
}

fn short_hex(hash: &[u8; 32]) -> String {
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A UID in the `{"type", "id"}` form the decision body takes.
pub fn uid_json(uid: &EntityUid) -> Value {
    json!({"type": uid.type_name().to_string(), "id": uid.id().unescaped()})
}

/// The decision request for a matched gateway request, in the shape of a
/// `/v1/is_authorized` body, so it goes through the same parsing and validation.
///
/// The context is the route's additions plus `source_ip` (when known) and `http`
/// (`method`, `path`, `query` and the table's selected `headers`). The resource and
/// its parent chain become per-request entities, each linked to the next, up to the
/// first one the entity store already holds: a stored entity wins, so a path cannot
/// move a known resource into another workspace. The last parent is only named.
pub fn body_for(
    matched: &Matched<'_>,
    principal: &EntityUid,
    original: &Original,
    client_ip: Option<IpAddr>,
    headers: &HeaderMap,
    table: &RouteTable,
    stored: &EntityStore,
) -> Body {
    let mut context = matched.context();
    if let Some(ip) = client_ip {
        // The extension form is an `ipaddr` with or without a schema.
        context.insert(
            "source_ip".into(),
            json!({"__extn": {"fn": "ip", "arg": ip.to_string()}}),
        );
    }
    let selected: serde_json::Map<String, Value> = table
        .headers()
        .iter()
        .filter_map(|name| {
            table::header_value(headers.get_all(name))
                .map(|value| (name.as_str().to_owned(), Value::String(value)))
        })
        .collect();
    context.insert(
        "http".into(),
        json!({
            "method": original.method,
            "path": original.path,
            "query": original.query,
            "headers": selected,
        }),
    );
    let mut made = Vec::new();
    for link in matched.chain() {
        let Some(parent) = &link.parent else { break };
        if stored.contains(&link.uid) {
            break;
        }
        made.push(json!({"uid": uid_json(&link.uid), "attrs": {}, "parents": [uid_json(parent)]}));
    }
    Body {
        principal: uid_json(principal),
        action: uid_json(&matched.route.action),
        resource: uid_json(&matched.resource()),
        context: Some(Value::Object(context)),
        entities: (!made.is_empty()).then_some(Value::Array(made)),
    }
}

#[cfg(test)]
mod tests;
