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
/// Quiet time after a file event before re-reading: editors write in bursts.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(250);
/// Rescan interval, because file events can be lost.
pub const DEFAULT_RESCAN: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_DECISION_QUEUE: usize = 65_536;
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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

/// Hot reload timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadConfig {
    pub debounce: Duration,
    pub rescan: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            debounce: DEFAULT_DEBOUNCE,
            rescan: DEFAULT_RESCAN,
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
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8180)),
            max_body: DEFAULT_MAX_BODY,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
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
    pub decision_log: Option<String>,
    pub validation: Option<Validation>,
    pub max_body_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub header_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    pub debounce_ms: Option<u64>,
    pub rescan_ms: Option<u64>,
    pub decision_queue: Option<usize>,
    pub shutdown_grace_ms: Option<u64>,
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
    #[error("`{value}` is not a listen address like `127.0.0.1:8180`")]
    Listen { value: String },
    #[error("`{name}` must be greater than zero")]
    Zero { name: &'static str },
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

/// Parses a listen address.
///
/// # Errors
/// The text is not `host:port` with an IP host.
pub fn parse_listen(value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse().map_err(|_| ConfigError::Listen {
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
    }

    #[test]
    fn listen_address_must_be_ip_and_port() {
        assert!(parse_listen("127.0.0.1:8180").is_ok());
        assert!(parse_listen("localhost").is_err());
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
