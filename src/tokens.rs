//! Bearer tokens for the workflow API: the hot-reloaded `--tokens` file mapping the
//! SHA-256 of each token to a principal, and constant-time lookup.
//!
//! The file holds only digests, so a leaked file (or a log line about it) grants
//! nothing. Tokens themselves are never logged and never appear in an error message.
//!
//! INVARIANT: a published [`TokenTable`] is never mutated. A reload reads the file
//! again, parses a whole candidate and swaps it in only if every entry is valid; bad
//! content keeps the last good table and is recorded in [`TokensStatus::last_error`].

use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use cedar_policy::EntityUid;
use jiff::Timestamp;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tokio_util::sync::CancellationToken;

/// What every token made by [`new_token`] starts with, so a leaked one is easy to
/// recognise (secret scanners, log greps).
pub const TOKEN_PREFIX: &str = "elv_";

/// Quiet time after a file event before the file is read again.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// File events can be lost (overflowing queues, network filesystems), so the file is
/// also read again this often; identical content is a no-op.
const RESCAN: Duration = Duration::from_secs(10);

/// A tokens file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read `{path}`: {source}", path = .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{path}`: {source}", path = .path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: Box<TokensError>,
    },
    // serde_json's syntax errors give a position, never the text around it, so they
    // cannot echo a token pasted into the file.
    #[error("not valid JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    #[error(r#"not a JSON array of `{{"sha256", "principal"}}` entries"#)]
    NotArray,
    /// One entry is wrong; `index` counts from 0, as `jq '.[3]'` does.
    #[error("entry {index}: {source}")]
    Entry {
        index: usize,
        #[source]
        source: EntryError,
    },
}

/// What is wrong with one entry of the tokens file. No variant carries the `sha256`
/// value, which might be a token pasted in by mistake.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(r#"not an object with `sha256` and `principal`"#)]
    NotObject,
    /// Unknown or missing fields, or a field of the wrong JSON type.
    #[error("{0}")]
    Fields(#[source] serde_json::Error),
    #[error(
        "`sha256` must be 64 hex characters (the SHA-256 of the token, not the token), found {found}"
    )]
    DigestLength { found: usize },
    #[error("`sha256` must be hex digits (the SHA-256 of the token, not the token)")]
    DigestNotHex,
    #[error(
        r#"`principal` `{principal}` is not a Cedar entity UID like `User::"carol"`: {source}"#
    )]
    Principal {
        principal: String,
        #[source]
        source: Box<cedar_policy::ParseErrors>,
    },
    #[error("the same `sha256` as entry {first}")]
    Duplicate { first: usize },
}

/// Why a request is not authenticated. Messages never include the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no `Authorization: Bearer` token")]
    Missing,
    #[error("the `Authorization` header is not `Bearer <token>`")]
    Malformed,
    #[error("the bearer token is not known")]
    Unknown,
}

/// One entry of the tokens file as written.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    sha256: String,
    principal: String,
    /// For the humans editing the file ("demo requester").
    #[serde(rename = "note")]
    _note: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    digest: [u8; 32],
    principal: EntityUid,
}

/// A parsed tokens file: which token digest authenticates which principal.
#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    // INVARIANT: no two entries share a digest, so at most one entry matches a token.
    entries: Vec<Entry>,
}

impl TokenTable {
    /// Parses a tokens file: `[{"sha256": "<hex>", "principal": "User::\"carol\""}]`.
    /// An empty array is valid: nobody can authenticate.
    ///
    /// # Errors
    /// The document is not a JSON array, or an entry is not an object with exactly a
    /// 64-hex-digit `sha256`, a Cedar entity UID `principal` and optionally a `note`,
    /// or two entries share a digest. The error names the first bad entry.
    pub fn parse(bytes: &[u8]) -> Result<Self, TokensError> {
        // A `Value` first: deserializing straight into entries would make serde name
        // the offending string in "invalid type" errors, and that string could be a
        // token pasted in the wrong place.
        let document: serde_json::Value =
            serde_json::from_slice(bytes).map_err(TokensError::Syntax)?;
        let serde_json::Value::Array(items) = document else {
            return Err(TokensError::NotArray);
        };
        let mut entries: Vec<Entry> = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let entry = parse_entry(item).map_err(|source| TokensError::Entry { index, source })?;
            if let Some(first) = entries.iter().position(|e| e.digest == entry.digest) {
                return Err(TokensError::Entry {
                    index,
                    source: EntryError::Duplicate { first },
                });
            }
            entries.push(entry);
        }
        Ok(Self { entries })
    }

    /// The principal `token` authenticates, if any.
    ///
    /// Every entry is compared, in constant time, whether or not an earlier one
    /// matched, so the time taken says nothing about which digests are in the table.
    pub fn lookup(&self, token: &str) -> Option<&EntityUid> {
        let digest = digest(token);
        let mut found = subtle::Choice::from(0);
        let mut index = 0_u64;
        for (i, entry) in (0_u64..).zip(&self.entries) {
            let matches = entry.digest.as_slice().ct_eq(digest.as_slice());
            index.conditional_assign(&i, matches);
            found |= matches;
        }
        if bool::from(found) {
            usize::try_from(index)
                .ok()
                .and_then(|i| self.entries.get(i))
                .map(|e| &e.principal)
        } else {
            None
        }
    }

    /// How many tokens the table knows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn parse_entry(item: serde_json::Value) -> Result<Entry, EntryError> {
    if !item.is_object() {
        return Err(EntryError::NotObject);
    }
    let raw: RawEntry = serde_json::from_value(item).map_err(EntryError::Fields)?;
    let found = raw.sha256.chars().count();
    if found != 64 {
        return Err(EntryError::DigestLength { found });
    }
    let mut digest = [0_u8; 32];
    hex::decode_to_slice(&raw.sha256, &mut digest).map_err(|_| EntryError::DigestNotHex)?;
    let principal =
        EntityUid::from_str(&raw.principal).map_err(|source| EntryError::Principal {
            principal: raw.principal.clone(),
            source: Box::new(source),
        })?;
    Ok(Entry { digest, principal })
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The SHA-256 of `token` in lowercase hex, as the tokens file holds it.
pub fn digest_hex(token: &str) -> String {
    hex::encode(digest(token))
}

/// A fresh token: 32 bytes from the operating system's CSPRNG, as [`TOKEN_PREFIX`]
/// followed by 64 lowercase hex digits.
///
/// # Errors
/// The operating system cannot provide random bytes.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// The token in an `Authorization` header value: `Bearer <token>`, the scheme in any
/// case (RFC 7235 makes auth schemes case-insensitive), the token visible ASCII.
fn bearer_token(header: &str) -> Result<&str, AuthError> {
    let (scheme, rest) = header
        .trim_matches(|c| c == ' ' || c == '\t')
        .split_once(' ')
        .ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

/// Reload bookkeeping of the tokens file, as `/v1/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokensStatus {
    pub path: PathBuf,
    /// Tokens in the live table.
    pub entries: usize,
    /// The last time a table went live (the first load counts).
    pub last_reload: Timestamp,
    /// Why the file on disk is not the live table, if it is not.
    pub last_error: Option<String>,
    /// Tables that went live, the first load included.
    pub reloads: u64,
    /// Distinct bad versions of the file seen (the same bad content counts once).
    pub failures: u64,
}

/// What the last failed reload saw, so the same bad file is logged and counted once
/// rather than on every rescan.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fingerprint {
    Content([u8; 32]),
    Unreadable(io::ErrorKind),
}

#[derive(Debug)]
struct ReloadState {
    /// SHA-256 of the live table's file content.
    live_hash: [u8; 32],
    failed: Option<Fingerprint>,
    status: TokensStatus,
}

/// The live token table, reloaded from its file when it changes.
pub struct Tokens {
    path: PathBuf,
    /// Read lock-free by every request; written only by `reload`, under `state`.
    table: ArcSwap<TokenTable>,
    /// One reload at a time. A std `Mutex` because it is held only for a file read and
    /// a parse, never across an `.await`; requests never take it.
    state: Mutex<ReloadState>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("path", &self.path)
            .field("entries", &self.table.load().len())
            .finish_non_exhaustive()
    }
}

impl Tokens {
    /// Loads the tokens file; at startup a bad file is fatal.
    ///
    /// # Errors
    /// The file cannot be read or is not a valid tokens file.
    pub fn load(path: PathBuf) -> Result<Arc<Self>, TokensError> {
        let (table, hash) = read_table(&path)?;
        tracing::info!(path = %path.display(), entries = table.len(), "loaded bearer tokens");
        let status = TokensStatus {
            path: path.clone(),
            entries: table.len(),
            last_reload: Timestamp::now(),
            last_error: None,
            reloads: 1,
            failures: 0,
        };
        Ok(Arc::new(Self {
            path,
            table: ArcSwap::from_pointee(table),
            state: Mutex::new(ReloadState {
                live_hash: hash,
                failed: None,
                status,
            }),
        }))
    }

    /// The principal an `Authorization` header value authenticates.
    ///
    /// # Errors
    /// No header, a header that is not `Bearer <token>`, or a token not in the table.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<EntityUid, AuthError> {
        let token = bearer_token(authorization.ok_or(AuthError::Missing)?)?;
        self.table
            .load()
            .lookup(token)
            .cloned()
            .ok_or(AuthError::Unknown)
    }

    /// Reads the file again; returns whether a new table went live. Identical content
    /// is a no-op; bad content keeps the last good table and records the error.
    pub fn reload(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(source) => {
                let fingerprint = Fingerprint::Unreadable(source.kind());
                let err = TokensError::Read {
                    path: self.path.clone(),
                    source,
                };
                self.failed(&mut state, fingerprint, &err);
                return false;
            }
        };
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        if hash == state.live_hash {
            // Back to the live content (say, a bad edit undone): nothing to report.
            state.failed = None;
            state.status.last_error = None;
            return false;
        }
        let fingerprint = Fingerprint::Content(hash);
        if state.failed.as_ref() == Some(&fingerprint) {
            return false;
        }
        match TokenTable::parse(&bytes) {
            Ok(table) => {
                tracing::info!(
                    path = %self.path.display(),
                    entries = table.len(),
                    "reloaded bearer tokens"
                );
                let entries = table.len();
                self.table.store(Arc::new(table));
                state.live_hash = hash;
                state.failed = None;
                let status = &mut state.status;
                status.entries = entries;
                status.last_reload = Timestamp::now();
                status.last_error = None;
                status.reloads += 1;
                true
            }
            Err(source) => {
                let err = TokensError::Invalid {
                    path: self.path.clone(),
                    source: Box::new(source),
                };
                self.failed(&mut state, fingerprint, &err);
                false
            }
        }
    }

    fn failed(&self, state: &mut ReloadState, fingerprint: Fingerprint, err: &TokensError) {
        if state.failed.as_ref() == Some(&fingerprint) {
            return;
        }
        // The file holds digests and principals only, so its errors are safe to log.
        tracing::warn!(
            path = %self.path.display(),
            error = %err,
            "bearer tokens not reloaded; keeping the last good table"
        );
        state.failed = Some(fingerprint);
        state.status.last_error = Some(err.to_string());
        state.status.failures += 1;
    }

    /// Reload status, for `/v1/status`.
    pub fn status(&self) -> TokensStatus {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .status
            .clone()
    }

    /// Watches the file's directory and rescans on a timer; reloads until `cancel`.
    ///
    /// The directory, not the file: editors replace a file by renaming a new one over
    /// it, and a Kubernetes ConfigMap by swapping its `..data` symlink, and either
    /// leaves a watch on the file itself watching a file nobody reads any more.
    /// Events only signal; after 200 ms of quiet the file is read again, and every
    /// 10 s regardless in case an event was lost.
    ///
    /// # Errors
    /// The watcher cannot be created or the directory cannot be watched.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        cancel: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, notify::Error> {
        let tokens = Arc::clone(self);
        crate::watch::spawn(&[&self.path], DEBOUNCE, RESCAN, cancel, move || {
            tokens.reload();
        })
    }
}

fn read_table(path: &Path) -> Result<(TokenTable, [u8; 32]), TokensError> {
    let bytes = std::fs::read(path).map_err(|source| TokensError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table = TokenTable::parse(&bytes).map_err(|source| TokensError::Invalid {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    Ok((table, Sha256::digest(&bytes).into()))
}

#[cfg(test)]
mod tests;
