//! Typed configuration: the values `serve` runs with, their documented defaults, and
//! the optional TOML file that holds the same settings as the flags (flags win).
//!
//! Building a `Config` does no I/O beyond reading the TOML file the caller names;
//! validating paths and sockets is the job of whoever opens them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Loopback only: exposing the decision API beyond the pod is an explicit choice.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8180";
/// What `elevate serve` loads when run from the repository root with no flags.
pub const DEFAULT_POLICIES: &str = "policies";
pub const DEFAULT_SCHEMA: &str = "schema/elevate.cedarschema";
pub const DEFAULT_ENTITIES: &str = "deploy/local/entities.json";
pub const DEFAULT_GRANTS: &str = "deploy/local/grants.json";
/// Where the embedded default keeps the workflow's event log and feed file.
pub const DEFAULT_WORKFLOW_DIR: &str = "deploy/local/data";
/// The embedded default's demo tokens (documented as demo-only).
pub const DEFAULT_TOKENS: &str = "deploy/local/tokens.json";
/// The embedded default's gateway route table (`/v1/forward-auth`).
pub const DEFAULT_ROUTES: &str = "deploy/local/routes.toml";
/// A pending request lapses after this long.
pub const DEFAULT_REQUEST_TTL: &str = "24h";
/// Quiet time after a file event before re-reading: editors write in bursts.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(250);
/// Rescan interval, because file events can be lost.
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// Time to receive an HTTP/1.1 request head once its first byte is in.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that moves no byte this long is closed; kept-alive connections wait
/// this long for their next request.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Time a client has to send a request body once its headers are in: a body trickled
/// slower than this (a slow POST) is a 408, and its connection is free again.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Request line plus headers, in bytes; beyond it a 431. nginx allows 32 KiB by default,
/// and forward-auth passes the client's headers through, cookies and all.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;
/// hyper's own floor for its read buffer: a smaller header limit cannot be enforced.
pub const MIN_MAX_HEADER_BYTES: usize = 8192;
/// Header fields per request; beyond it a 431 (hyper's default, kept on its fast path).
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Streams one HTTP/2 connection may have open at once; more are refused.
pub const DEFAULT_H2_MAX_STREAMS: u32 = 256;
/// Streams a client may reset before the server reads them (the HTTP/2 "rapid reset"
/// flood, CVE-2023-44487); beyond it the connection gets a GOAWAY.
pub const DEFAULT_H2_MAX_PENDING_RESETS: usize = 20;
/// Arrays and objects nested in a JSON body; deeper is a 400. Real requests nest a
/// handful of levels; the bound keeps recursive parsers (serde's, Cedar's) far from
/// the stack's end.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 64;
/// Bytes of answers the decision cache of `/v1/is_authorized` keeps (4 MiB: some
/// 7,000 ordinary answers); `0` turns it off.
pub const DEFAULT_DECISION_CACHE_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_DECISION_QUEUE: usize = 65_536;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// A remote grant feed not confirmed fresh for this long suspends all grants.
pub const DEFAULT_MAX_FEED_AGE: Duration = Duration::from_secs(60);
/// The long-poll a sidecar asks for (`?wait=25`); capped at half of `max_feed_age`, so
/// a healthy feed that holds the request the whole time is never stale.
pub const DEFAULT_FEED_WAIT: Duration = Duration::from_secs(25);
/// How much longer than the long-poll a request may take (connect, headers, body).
pub const DEFAULT_FEED_TIMEOUT_GRACE: Duration = Duration::from_secs(5);
/// Retry delays after a failed fetch: doubling from the first to the last, with jitter.
pub const DEFAULT_FEED_BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const DEFAULT_FEED_BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Least time between two requests that brought nothing new, for servers that answer
/// at once instead of holding the long-poll (a CDN, an object store).
pub const DEFAULT_FEED_MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Largest feed document accepted.
pub const DEFAULT_MAX_FEED_BYTES: usize = 64 * 1024 * 1024;

/// How validation findings are treated at load.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Validation {
    /// Policies and entities must validate against the schema.
    #[default]
    Strict,
    /// Log validation errors and serve anyway (for suites on unvalidated policies).
    Warn,
}

/// Where the inputs are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub policies: PathBuf,
    pub schema: Option<PathBuf>,
    pub entities: Option<PathBuf>,
    pub grants: Option<PathBuf>,
    pub validation: Validation,
}

/// Hot reload timing, and (the snapshot's reloader only) its priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadConfig {
    pub debounce: Duration,
    pub rescan: Duration,
    /// Nice levels the snapshot reloader runs below the request threads
    /// (`--reload-nice`, 0 to 19; 0 disables).
    pub nice: i32,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            debounce: DEFAULT_DEBOUNCE,
            rescan: DEFAULT_RESCAN,
            nice: crate::priority::DEFAULT_RELOAD_NICE,
        }
    }
}

/// Where decision records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionLog {
    Off,
    Stdout,
    File(PathBuf),
}

/// The HTTP listener's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub max_body: usize,
    /// Time to receive an HTTP/1.1 request head, from its first byte (or from the
    /// answer before it, when that byte came pipelined with the previous request);
    /// the connection is closed when it runs out. Not HTTP/2, not between requests.
    pub header_timeout: Duration,
    /// A connection that moves no byte this long is closed.
    pub idle_timeout: Duration,
    /// Time to receive a whole request body, from the end of its headers.
    pub body_timeout: Duration,
    /// Connections open at once. At the limit, the connection idle longest (no request
    /// in flight) is closed to make room; when every one is busy, the new one is.
    pub max_connections: usize,
    /// Request line and headers, in bytes (HTTP/1.1; HTTP/2's header list too).
    pub max_header_bytes: usize,
    /// Header fields per HTTP/1.1 request.
    pub max_headers: usize,
    /// Concurrent streams per HTTP/2 connection.
    pub h2_max_streams: u32,
    /// HTTP/2 streams reset by the client before being served, per connection.
    pub h2_max_pending_resets: usize,
    /// Nesting of arrays and objects in a JSON request body.
    pub max_json_depth: usize,
    /// Bytes the decision cache may hold; `0` is off.
    pub decision_cache_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8180)),
            max_body: DEFAULT_MAX_BODY,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            h2_max_streams: DEFAULT_H2_MAX_STREAMS,
            h2_max_pending_resets: DEFAULT_H2_MAX_PENDING_RESETS,
            max_json_depth: DEFAULT_MAX_JSON_DEPTH,
            decision_cache_bytes: DEFAULT_DECISION_CACHE_BYTES,
        }
    }
}

/// The URL of a remote grant feed: `http[s]://host[:port]/path[?query]`, checked.
///
/// `https://` is verified against the system roots, or only against `--feed-ca`.
/// Plain `http://` belongs on loopback; elsewhere it needs signed feeds or an explicit
/// `--allow-insecure-feed` (see `cli::serve`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedUrl(hyper::Uri);

impl FeedUrl {
    /// Parses and checks a grant feed URL.
    ///
    /// # Errors
    /// Not an absolute `http://` or `https://` URL with a host.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let bad = |reason: &'static str| ConfigError::GrantsUrl {
            value: value.to_owned(),
            reason,
        };
        let uri: hyper::Uri = value
            .parse()
            .map_err(|_| bad("is not a URL like `http://127.0.0.1:8180/v1/grants`"))?;
        match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http" | "https") => {}
            Some(_) => {
                return Err(bad(
                    "is neither http:// nor https://; only those URLs are supported",
                ));
            }
            None => {
                return Err(bad(
                    "is not absolute; give it as `http://host:port/v1/grants`",
                ));
            }
        }
        match uri.authority() {
            Some(a) if !a.host().is_empty() => {}
            _ => return Err(bad("has no host")),
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(bad("has credentials in it, which are not supported"));
        }
        Ok(Self(uri))
    }

    pub fn uri(&self) -> &hyper::Uri {
        &self.0
    }

    /// Whether the feed is fetched over TLS.
    pub fn is_https(&self) -> bool {
        self.0
            .scheme_str()
            .is_some_and(|s| s.eq_ignore_ascii_case("https"))
    }

    /// Whether the host is this machine (`localhost`, `127.0.0.0/8`, `::1`), where
    /// plain HTTP crosses no network.
    pub fn is_loopback(&self) -> bool {
        let host = self.0.host().unwrap_or_default();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// TLS on the API listener (`--tls-cert`, `--tls-key`, `--tls-client-ca`): PEM files,
/// watched and reloaded (see [`crate::tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsConfig {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Client certificates signed by this CA are verified at the handshake, and
    /// `GET /v1/grants` needs one; other routes keep their own authentication.
    pub client_ca: Option<PathBuf>,
    pub reload: ReloadConfig,
}

/// TLS for a client of ours (the feed fetcher, the CLI): whom to trust, and the
/// certificate to present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsConfig {
    /// Trust only this CA (PEM, one or more certificates); `None` for the system roots.
    pub ca: Option<PathBuf>,
    /// A client certificate chain and its key, for mTLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Display for FeedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A grant feed fetched over HTTP (`--grants-url`), long-polled with ETags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFeedConfig {
    pub url: FeedUrl,
    /// Grants are suspended once the feed has not been confirmed fresh for this long.
    pub max_age: Duration,
    /// Long-poll asked of the server; see [`RemoteFeedConfig::long_poll`].
    pub wait: Duration,
    /// Added to the long-poll to give one request's timeout.
    pub timeout_grace: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// See [`DEFAULT_FEED_MIN_INTERVAL`]; capped at a quarter of `max_age`.
    pub min_interval: Duration,
    pub max_bytes: usize,
    /// For an `https://` feed: whom to trust and what to present.
    pub tls: ClientTlsConfig,
}

impl RemoteFeedConfig {
    /// `url` with the documented defaults.
    pub fn new(url: FeedUrl, max_age: Duration) -> Self {
        Self {
            url,
            max_age,
            wait: DEFAULT_FEED_WAIT,
            timeout_grace: DEFAULT_FEED_TIMEOUT_GRACE,
            backoff_min: DEFAULT_FEED_BACKOFF_MIN,
            backoff_max: DEFAULT_FEED_BACKOFF_MAX,
            min_interval: DEFAULT_FEED_MIN_INTERVAL,
            max_bytes: DEFAULT_MAX_FEED_BYTES,
            tls: ClientTlsConfig::default(),
        }
    }

    /// The `?wait=` to send, in whole seconds: `wait`, but at most half of `max_age`,
    /// so a long-poll that is held to the end still answers well before the feed goes
    /// stale. Zero means "do not ask for a long-poll".
    pub fn long_poll(&self) -> u64 {
        self.wait.min(self.max_age / 2).as_secs()
    }

    /// The whole time one request may take: the long-poll plus the grace.
    pub fn timeout(&self, long_poll: u64) -> Duration {
        Duration::from_secs(long_poll) + self.timeout_grace
    }

    /// Pacing between requests that brought nothing new.
    pub fn min_interval(&self) -> Duration {
        self.min_interval.min(self.max_age / 4)
    }
}

/// Signed grant feeds (see [`crate::signing`]): the key files, read when the server
/// starts. Empty lists change nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedSigningConfig {
    /// A sidecar accepts only feeds signed by one of these (`--feed-public-key`).
    pub public_keys: Vec<PathBuf>,
    /// How far a feed's `generated_at` may be ahead of this sidecar's clock.
    pub max_skew: Duration,
    /// The workflow signs every feed revision with each of these (`--feed-signing-key`).
    pub signing_keys: Vec<PathBuf>,
}

impl Default for FeedSigningConfig {
    fn default() -> Self {
        Self {
            public_keys: Vec::new(),
            max_skew: crate::signing::DEFAULT_MAX_SKEW,
            signing_keys: Vec::new(),
        }
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub sources: Sources,
    pub reload: ReloadConfig,
    pub http: HttpConfig,
    pub decision_log: DecisionLog,
    pub decision_queue: usize,
    pub shutdown_grace: Duration,
    /// The workflow this process runs, if any (`--workflow`). Its feed is then the
    /// sidecar's grants: `sources.grants` is `None`.
    pub workflow: Option<WorkflowSettings>,
}

/// `serve --workflow`: where the workflow lives and who may call it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowSettings {
    pub data_dir: PathBuf,
    /// The bearer tokens file (hot-reloaded).
    pub tokens: PathBuf,
    /// The feed file to write; `None` for none.
    pub feed_file: Option<PathBuf>,
    pub request_ttl: jiff::SignedDuration,
    /// Webhook targets, `KIND[,KIND]=URL` or `URL`.
    pub webhooks: Vec<String>,
}

/// The TOML file: every key optional, same names as the long flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    pub listen: Option<String>,
    pub policies: Option<PathBuf>,
    pub schema: Option<PathBuf>,
    pub entities: Option<PathBuf>,
    pub grants: Option<PathBuf>,
    pub grants_url: Option<String>,
    pub max_feed_age_ms: Option<u64>,
    pub decision_log: Option<String>,
    pub validation: Option<Validation>,
    pub max_body_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub header_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub max_header_bytes: Option<usize>,
    pub max_headers: Option<usize>,
    pub h2_max_streams: Option<u32>,
    pub h2_max_pending_resets: Option<usize>,
    pub max_json_depth: Option<usize>,
    pub debounce_ms: Option<u64>,
    pub rescan_ms: Option<u64>,
    pub reload_nice: Option<i32>,
    pub decision_queue: Option<usize>,
    pub decision_cache_bytes: Option<usize>,
    pub shutdown_grace_ms: Option<u64>,
    pub workflow: Option<PathBuf>,
    pub tokens: Option<PathBuf>,
    /// A path, or `off`.
    pub feed_file: Option<String>,
    pub request_ttl: Option<String>,
    #[serde(default)]
    pub webhooks: Vec<String>,
    pub routes: Option<PathBuf>,
    pub principal_header: Option<String>,
    pub principal_type: Option<String>,
    pub client_ip_header: Option<String>,
    pub jwt_keys: Option<PathBuf>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_principal_claim: Option<String>,
    pub jwt_leeway_ms: Option<u64>,
    #[serde(default)]
    pub feed_public_key: Vec<PathBuf>,
    pub feed_max_skew_ms: Option<u64>,
    #[serde(default)]
    pub feed_signing_key: Vec<PathBuf>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub feed_ca: Option<PathBuf>,
    pub feed_client_cert: Option<PathBuf>,
    pub feed_client_key: Option<PathBuf>,
    pub allow_insecure_feed: Option<bool>,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file `{path}`: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("`{value}` is not a listen address like `127.0.0.1:8180` or `unix:/run/elevate.sock`")]
    Listen { value: String },
    #[error("`{name}` must be greater than zero")]
    Zero { name: &'static str },
    #[error("`reload-nice` must be between 0 and 19, not `{value}`")]
    ReloadNice { value: i32 },
    #[error("`{name}` must be at least {min}, not {value}")]
    TooSmall {
        name: &'static str,
        min: usize,
        value: usize,
    },
    #[error("grant feed URL `{value}` {reason}")]
    GrantsUrl { value: String, reason: &'static str },
    #[error(
        "both `grants` and `grants-url` are set in {place}; the grant feed is a file or a URL, not both"
    )]
    TwoFeeds { place: &'static str },
    #[error("`{name}`: `{value}` is not a duration like `24h` or `PT24H`")]
    Duration { name: &'static str, value: String },
    #[error("`--workflow` needs `--tokens FILE`: without tokens nobody could call the workflow")]
    WorkflowWithoutTokens,
    #[error(
        "`--workflow` publishes this sidecar's grants itself; drop `{option}` (other sidecars follow its feed)"
    )]
    WorkflowWithFeed { option: &'static str },
    #[error("`{option}`: `{value}` {reason}")]
    Gateway {
        option: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("`{option}` configures `/v1/forward-auth`, which needs `--routes FILE` too")]
    GatewayWithoutRoutes { option: &'static str },
    #[error("`--feed-signing-key` signs the workflow's feed; it needs `--workflow DATA_DIR`")]
    SigningKeyWithoutWorkflow,
    #[error(
        "`--feed-public-key` verifies a feed from elsewhere; with `--workflow` this sidecar follows its own workflow"
    )]
    PublicKeyWithWorkflow,
    #[error("`--{given}` needs `--{missing}` too")]
    TlsPair {
        given: &'static str,
        missing: &'static str,
    },
    #[error(
        "`--tls-client-ca` verifies client certificates, which needs TLS: add `--tls-cert` and `--tls-key`"
    )]
    ClientCaWithoutTls,
    #[error("`--tls-cert` serves TLS over TCP; a Unix socket (`{listen}`) is served plain")]
    TlsOnUnixSocket { listen: String },
    #[error("`--{option}` configures TLS for the grant feed, which needs an `https://` feed URL")]
    FeedTlsWithoutHttps { option: &'static str },
    #[error(
        "grant feed URL `{url}` is plain http to another host: anyone on the path could grant elevation; use https://, signed feeds (`--feed-public-key`), or `--allow-insecure-feed` on a network you trust"
    )]
    InsecureFeed { url: String },
}

/// Parses a positive duration in friendly (`24h`) or ISO 8601 (`PT24H`) form.
///
/// # Errors
/// Not a duration, or not positive.
pub fn parse_duration(
    name: &'static str,
    value: &str,
) -> Result<jiff::SignedDuration, ConfigError> {
    value
        .trim()
        .parse::<jiff::SignedDuration>()
        .ok()
        .filter(|d| d.is_positive())
        .ok_or_else(|| ConfigError::Duration {
            name,
            value: value.to_owned(),
        })
}

impl FileConfig {
    /// Reads and parses a TOML config file; unknown keys are an error, not a surprise.
    ///
    /// # Errors
    /// The file cannot be read or is not valid TOML of this shape.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Toml {
            path: path.to_path_buf(),
            message: e.message().to_owned(),
        })
    }
}

/// Where the decision API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    Tcp(SocketAddr),
    /// `unix:/path`: a Unix domain socket file.
    Unix(PathBuf),
}

/// Parses a listen address: `host:port` with an IP host, or `unix:/path`.
///
/// # Errors
/// The text is neither.
pub fn parse_listen(value: &str) -> Result<Listen, ConfigError> {
    if let Some(path) = value.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(ConfigError::Listen {
                value: value.to_owned(),
            });
        }
        return Ok(Listen::Unix(PathBuf::from(path)));
    }
    value
        .parse()
        .map(Listen::Tcp)
        .map_err(|_| ConfigError::Listen {
            value: value.to_owned(),
        })
}

/// `-` is stdout, `off` disables, anything else is a file path.
pub fn parse_decision_log(value: &str) -> DecisionLog {
    match value {
        "-" => DecisionLog::Stdout,
        "off" | "" => DecisionLog::Off,
        path => DecisionLog::File(PathBuf::from(path)),
    }
}

/// Rejects zero where zero would mean "never" or "nothing".
///
/// # Errors
/// `value` is zero.
pub fn nonzero(name: &'static str, value: u64) -> Result<u64, ConfigError> {
    if value == 0 {
        Err(ConfigError::Zero { name })
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn file_config_rejects_unknown_keys() {
        let err = toml::from_str::<FileConfig>("listen = \"127.0.0.1:1\"\nlisten_addr = 3\n");
        assert!(err.is_err());
        let ok: FileConfig =
            toml::from_str("listen = \"127.0.0.1:1\"\nvalidation = \"warn\"\n").unwrap();
        assert_eq!(ok.validation, Some(Validation::Warn));
        assert_eq!(ok.listen.as_deref(), Some("127.0.0.1:1"));
    }

    #[test]
    fn shipped_example_config_names_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/elevate.toml");
        let file = FileConfig::load(&path).unwrap();
        assert_eq!(file.listen.as_deref(), Some(DEFAULT_LISTEN));
        assert_eq!(file.policies.as_deref(), Some(Path::new(DEFAULT_POLICIES)));
        assert_eq!(file.max_body_bytes, Some(DEFAULT_MAX_BODY));
        assert_eq!(file.rescan_ms, Some(30_000));
        assert_eq!(
            file.decision_cache_bytes,
            Some(DEFAULT_DECISION_CACHE_BYTES)
        );
    }

    #[test]
    fn listen_address_must_be_ip_and_port() {
        assert!(parse_listen("127.0.0.1:8180").is_ok());
        assert!(parse_listen("localhost").is_err());
        assert_eq!(
            parse_listen("unix:/run/elevate/api.sock").unwrap(),
            Listen::Unix(PathBuf::from("/run/elevate/api.sock"))
        );
        assert!(parse_listen("unix:").is_err());
    }

    #[test]
    fn grants_url_must_be_http_or_https_with_a_host() {
        let url = FeedUrl::parse("http://127.0.0.1:8180/v1/grants").unwrap();
        assert_eq!(url.to_string(), "http://127.0.0.1:8180/v1/grants");
        assert!(!url.is_https() && url.is_loopback());
        let url = FeedUrl::parse("HTTPS://feed.internal:8443/v1/grants").unwrap();
        assert!(url.is_https() && !url.is_loopback());
        for (value, loopback) in [
            ("http://localhost/v1/grants", true),
            ("http://127.1.2.3:1/v1/grants", true),
            ("http://[::1]:8180/v1/grants", true),
            ("http://10.0.0.1/v1/grants", false),
            ("http://localhost.evil.example/v1/grants", false),
        ] {
            assert_eq!(
                FeedUrl::parse(value).unwrap().is_loopback(),
                loopback,
                "{value}"
            );
        }
        assert!(FeedUrl::parse("HTTP://feed.internal/v1/grants?x=1").is_ok());
        for (value, needle) in [
            ("ftp://feed/v1/grants", "neither http:// nor https://"),
            ("/v1/grants", "not absolute"),
            ("feed:8180", "not absolute"),
            ("http://user:pw@feed/v1/grants", "credentials"),
            ("http:// bad", "not a URL"),
        ] {
            let err = FeedUrl::parse(value).unwrap_err().to_string();
            assert!(err.contains(needle), "{value}: {err}");
            assert!(err.contains(value), "{value}: {err}");
        }
    }

    #[test]
    fn long_poll_stays_well_inside_the_maximum_feed_age() {
        let url = FeedUrl::parse("http://127.0.0.1:1/v1/grants").unwrap();
        let feed = RemoteFeedConfig::new(url.clone(), DEFAULT_MAX_FEED_AGE);
        assert_eq!(feed.long_poll(), 25);
        assert_eq!(feed.timeout(25), Duration::from_secs(30));
        assert_eq!(feed.min_interval(), Duration::from_secs(1));
        let short = RemoteFeedConfig::new(url.clone(), Duration::from_secs(10));
        assert_eq!(short.long_poll(), 5);
        let tiny = RemoteFeedConfig::new(url, Duration::from_secs(1));
        assert_eq!(tiny.long_poll(), 0, "no long-poll below two seconds");
        assert_eq!(tiny.min_interval(), Duration::from_millis(250));
    }

    #[test]
    fn file_config_knows_the_remote_feed_keys() {
        let file: FileConfig = toml::from_str(
            "grants-url = \"http://127.0.0.1:1/v1/grants\"\nmax-feed-age-ms = 5000\n",
        )
        .unwrap();
        assert_eq!(
            file.grants_url.as_deref(),
            Some("http://127.0.0.1:1/v1/grants")
        );
        assert_eq!(file.max_feed_age_ms, Some(5000));
    }

    #[test]
    fn file_config_knows_the_tls_keys() {
        let file: FileConfig = toml::from_str(
            "tls-cert = \"c.pem\"\ntls-key = \"k.pem\"\ntls-client-ca = \"ca.pem\"\n\
             feed-ca = \"f.pem\"\nfeed-client-cert = \"fc.pem\"\nfeed-client-key = \"fk.pem\"\n\
             allow-insecure-feed = true\n",
        )
        .unwrap();
        assert_eq!(file.tls_cert.as_deref(), Some(Path::new("c.pem")));
        assert_eq!(file.tls_key.as_deref(), Some(Path::new("k.pem")));
        assert_eq!(file.tls_client_ca.as_deref(), Some(Path::new("ca.pem")));
        assert_eq!(file.feed_ca.as_deref(), Some(Path::new("f.pem")));
        assert_eq!(file.feed_client_cert.as_deref(), Some(Path::new("fc.pem")));
        assert_eq!(file.feed_client_key.as_deref(), Some(Path::new("fk.pem")));
        assert_eq!(file.allow_insecure_feed, Some(true));
    }

    #[test]
    fn decision_log_targets() {
        assert_eq!(parse_decision_log("-"), DecisionLog::Stdout);
        assert_eq!(parse_decision_log("off"), DecisionLog::Off);
        assert_eq!(
            parse_decision_log("/tmp/d.jsonl"),
            DecisionLog::File(PathBuf::from("/tmp/d.jsonl"))
        );
    }
}
