//! `elevate serve`: load, bind, watch, serve until SIGTERM/SIGINT, drain, flush.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{EXIT_FAILURE, EXIT_INVALID, EXIT_OK, InputArgs};
use crate::audit::DecisionLog;
use crate::config::{
    self, Config, ConfigError, FileConfig, HttpConfig, ReloadConfig, RemoteFeedConfig,
    WorkflowSettings,
};
use crate::http::listener::Listener as _;
use crate::http::{self, App, WorkflowApi};
use crate::metrics::Metrics;
use crate::snapshot::{self, Store};
use crate::tokens::{Tokens, TokensError};
use crate::webhook::{WebhookConfig, WebhookError, Webhooks};
use crate::workflow::service::{Service, ServiceConfig, ServiceError};

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub inputs: InputArgs,
    /// Address for the decision API [default: 127.0.0.1:8180]
    #[arg(long, env = "ELEVATE_LISTEN")]
    pub listen: Option<String>,
    /// Decision log: a file path, `-` for stdout, or `off` [default: off]
    #[arg(long, env = "ELEVATE_DECISION_LOG")]
    pub decision_log: Option<String>,
    /// Quiet time after a file event before reloading, in ms [default: 250]
    #[arg(long, env = "ELEVATE_DEBOUNCE_MS")]
    pub debounce_ms: Option<u64>,
    /// Rescan interval, in case file events are lost, in ms [default: 30000]
    #[arg(long, env = "ELEVATE_RESCAN_MS")]
    pub rescan_ms: Option<u64>,
    /// Nice levels the reloader thread runs below the request threads, 0 to 19; 0
    /// runs reloads at the same priority [default: 5]
    #[arg(long, env = "ELEVATE_RELOAD_NICE")]
    pub reload_nice: Option<i32>,
    /// Decision records queued before ordinary ones are dropped [default: 65536]
    #[arg(long, env = "ELEVATE_DECISION_QUEUE")]
    pub decision_queue: Option<usize>,
    /// Bytes of answers to reuse for identical `/v1/is_authorized` bodies while they
    /// provably hold (same inputs, no grant window or feed deadline crossed); `0` is
    /// off [default: 4194304]
    #[arg(long, env = "ELEVATE_DECISION_CACHE_BYTES")]
    pub decision_cache_bytes: Option<usize>,
    /// Time to drain in-flight requests on shutdown, in ms [default: 10000]
    #[arg(long, env = "ELEVATE_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
    /// With `--grants-url`: grants are suspended once the feed has not been confirmed
    /// fresh for this long, in ms [default: 60000]
    #[arg(long, env = "ELEVATE_MAX_FEED_AGE_MS")]
    pub max_feed_age_ms: Option<u64>,
    /// Run the elevation workflow too, with its event log and feed file in this
    /// directory; its feed becomes this sidecar's grants [default with no inputs named:
    /// deploy/local/data]
    #[arg(long, env = "ELEVATE_WORKFLOW")]
    pub workflow: Option<PathBuf>,
    /// With `--workflow`: bearer tokens, `[{"sha256": HEX, "principal": UID}]`,
    /// hot-reloaded [default with no inputs named: deploy/local/tokens.json]
    #[arg(long, env = "ELEVATE_TOKENS")]
    pub tokens: Option<PathBuf>,
    /// With `--workflow`: where to write the grant feed for sidecars on this host, or
    /// `off` [default: DATA_DIR/grants.json]
    #[arg(long, env = "ELEVATE_FEED_FILE")]
    pub feed_file: Option<String>,
    /// With `--workflow`: a pending request lapses after this long [default: 24h]
    #[arg(long, env = "ELEVATE_REQUEST_TTL")]
    pub request_ttl: Option<String>,
    /// With `--workflow`: POST workflow events to a URL, `KIND[,KIND...]=URL` or `URL`
    /// for every kind; repeatable
    #[arg(long = "webhook", value_name = "SPEC")]
    pub webhooks: Vec<String>,
    /// Signed grant feeds' flags, boxed like the gateway's.
    #[command(flatten)]
    pub signing: Box<FeedSigningArgs>,
    /// The gateway endpoints' flags, boxed: `Command` holds every subcommand's
    /// arguments inline, and these are seldom set.
    #[command(flatten)]
    pub gateway: Box<GatewayArgs>,
    /// The HTTP surface's limits: sizes, connections, timeouts, HTTP/2, JSON depth.
    #[command(flatten)]
    pub limits: Box<LimitArgs>,
    /// TLS flags, boxed like the gateway's.
    #[command(flatten)]
    pub tls: Box<TlsArgs>,
}

/// `serve`'s TLS flags: the listener's certificate, and the grant feed client's trust.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Serve TLS with this certificate chain (PEM, leaf first), reloaded when it
    /// changes; needs `--tls-key` [default: plain HTTP]
    #[arg(long, value_name = "FILE", env = "ELEVATE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE", env = "ELEVATE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// With `--tls-cert`: verify client certificates against this CA (PEM); `GET
    /// /v1/grants` then needs one, other routes keep their own authentication
    #[arg(long, value_name = "FILE", env = "ELEVATE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// With an `https://` grant feed: trust only this CA (PEM) instead of the system
    /// roots
    #[arg(long, value_name = "FILE", env = "ELEVATE_FEED_CA")]
    pub feed_ca: Option<PathBuf>,
    /// With an `https://` grant feed: present this client certificate (PEM, mTLS);
    /// needs `--feed-client-key`
    #[arg(long, value_name = "FILE", env = "ELEVATE_FEED_CLIENT_CERT")]
    pub feed_client_cert: Option<PathBuf>,
    /// The private key of `--feed-client-cert` (PEM)
    #[arg(long, value_name = "FILE", env = "ELEVATE_FEED_CLIENT_KEY")]
    pub feed_client_key: Option<PathBuf>,
    /// Follow a plain `http://` grant feed on another host without signed feeds
    /// (`--feed-public-key`): only on a network you trust
    #[arg(long, env = "ELEVATE_ALLOW_INSECURE_FEED")]
    pub allow_insecure_feed: bool,
}

/// `serve`'s limits on what one client may send (see [`HttpConfig`]).
#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Time a client has to send a request body after its headers, in ms; slower is a
    /// 408 [default: 10000]
    #[arg(long, env = "ELEVATE_BODY_TIMEOUT_MS")]
    pub body_timeout_ms: Option<u64>,
    /// Largest request body accepted, in bytes [default: 1048576]
    #[arg(long, env = "ELEVATE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most connections open at once; at the limit the one idle longest is closed to
    /// make room [default: 4096]
    #[arg(long, env = "ELEVATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Time a client has to send an HTTP/1.1 request head from its first byte, in ms;
    /// the wait between kept-alive requests is not timed by it [default: 10000]
    #[arg(long, env = "ELEVATE_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// A connection that moves no byte this long is closed, in ms [default: 120000]
    #[arg(long, env = "ELEVATE_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Largest request line plus headers, in bytes; more is a 431 [default: 32768,
    /// at least 8192]
    #[arg(long, env = "ELEVATE_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<usize>,
    /// Most header fields in one HTTP/1.1 request; more is a 431 [default: 100]
    #[arg(long, env = "ELEVATE_MAX_HEADERS")]
    pub max_headers: Option<usize>,
    /// Most concurrent streams on one HTTP/2 connection [default: 256]
    #[arg(long, env = "ELEVATE_H2_MAX_STREAMS")]
    pub h2_max_streams: Option<u32>,
    /// HTTP/2 streams a client may reset before they are served, per connection,
    /// before it is sent away (rapid-reset flood guard) [default: 20]
    #[arg(long, env = "ELEVATE_H2_MAX_PENDING_RESETS")]
    pub h2_max_pending_resets: Option<usize>,
    /// Deepest nesting of arrays and objects in a JSON request body; deeper is a 400
    /// [default: 64]
    #[arg(long, env = "ELEVATE_MAX_JSON_DEPTH")]
    pub max_json_depth: Option<usize>,
}

impl LimitArgs {
    /// Fills `http`'s limits from the flags, then the file, then the defaults.
    fn apply(&self, file: &FileConfig, http: &mut HttpConfig) -> Result<(), ConfigError> {
        let positive = |name, value: usize| -> Result<usize, ConfigError> {
            config::nonzero(name, value as u64).map(|_| value)
        };
        if let Some(v) = self.body_timeout_ms.or(file.body_timeout_ms) {
            http.body_timeout = Duration::from_millis(config::nonzero("body-timeout-ms", v)?);
        }
        if let Some(v) = self.max_header_bytes.or(file.max_header_bytes) {
            if v < config::MIN_MAX_HEADER_BYTES {
                return Err(ConfigError::TooSmall {
                    name: "max-header-bytes",
                    min: config::MIN_MAX_HEADER_BYTES,
                    value: v,
                });
            }
            http.max_header_bytes = v;
        }
        if let Some(v) = self.max_headers.or(file.max_headers) {
            http.max_headers = positive("max-headers", v)?;
        }
        if let Some(v) = self.h2_max_streams.or(file.h2_max_streams) {
            config::nonzero("h2-max-streams", u64::from(v))?;
            http.h2_max_streams = v;
        }
        if let Some(v) = self.h2_max_pending_resets.or(file.h2_max_pending_resets) {
            http.h2_max_pending_resets = positive("h2-max-pending-resets", v)?;
        }
        if let Some(v) = self.max_json_depth.or(file.max_json_depth) {
            http.max_json_depth = positive("max-json-depth", v)?;
        }
        Ok(())
    }
}

/// `serve`'s flags for signed grant feeds (see [`crate::signing`]).
#[derive(Debug, Args)]
pub struct FeedSigningArgs {
    /// Accept only grant feeds signed by this Ed25519 public key (PEM, from `elevate
    /// keygen`); repeatable, every key listed is trusted (rotation) [default: none,
    /// unsigned feeds are accepted]
    #[arg(
        long = "feed-public-key",
        value_name = "FILE",
        env = "ELEVATE_FEED_PUBLIC_KEYS",
        value_delimiter = ','
    )]
    pub feed_public_keys: Vec<PathBuf>,
    /// With `--feed-public-key`: how far a feed's `generated_at` may be ahead of this
    /// sidecar's clock, in ms [default: 30000]
    #[arg(long, env = "ELEVATE_FEED_MAX_SKEW_MS")]
    pub feed_max_skew_ms: Option<u64>,
    /// With `--workflow`: sign every feed revision with this Ed25519 private key (PEM,
    /// from `elevate keygen`); repeatable, each signs (rotation) [default: unsigned]
    #[arg(
        long = "feed-signing-key",
        value_name = "FILE",
        env = "ELEVATE_FEED_SIGNING_KEYS",
        value_delimiter = ','
    )]
    pub feed_signing_keys: Vec<PathBuf>,
}

/// `serve`'s flags for `/v1/forward-auth`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Gateway route table (TOML) for `/v1/forward-auth`, hot-reloaded [default with no
    /// inputs named: deploy/local/routes.toml]
    #[arg(long, env = "ELEVATE_ROUTES")]
    pub routes: Option<PathBuf>,
    /// With `--routes`: the header the gateway sets to the authenticated principal
    /// [default: X-Auth-Principal]
    #[arg(long, env = "ELEVATE_PRINCIPAL_HEADER")]
    pub principal_header: Option<String>,
    /// With `--routes`: the entity type of a bare principal id in that header
    /// [default: User]
    #[arg(long, env = "ELEVATE_PRINCIPAL_TYPE")]
    pub principal_type: Option<String>,
    /// With `--routes`: take `context.source_ip` from this header, which the gateway
    /// must overwrite on every request (its last comma-separated entry) [default: none,
    /// the connection's peer]
    #[arg(long, env = "ELEVATE_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    /// With `--routes`: also serve Envoy's ext_authz gRPC service
    /// (`envoy.service.auth.v3.Authorization/Check`) on this address, like
    /// `127.0.0.1:8181` [default: off]
    #[arg(long, env = "ELEVATE_GRPC_LISTEN")]
    pub grpc_listen: Option<String>,
    /// With `--routes`: take the principal from the original request's
    /// `Authorization: Bearer` JWT, verified with this key set (a JWK set, or PEM
    /// public keys), hot-reloaded; the principal header is then not read [default:
    /// none, the principal header]
    #[arg(long, value_name = "FILE", env = "ELEVATE_JWT_KEYS")]
    pub jwt_keys: Option<PathBuf>,
    /// With `--jwt-keys` (required): the one accepted `iss`
    #[arg(long, value_name = "ISS", env = "ELEVATE_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// With `--jwt-keys` (required): the `aud` a token must be for (this service)
    #[arg(long, value_name = "AUD", env = "ELEVATE_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// With `--jwt-keys`: the claim that names the principal, a UID or a bare id of
    /// `--principal-type` [default: sub]
    #[arg(long, value_name = "CLAIM", env = "ELEVATE_JWT_PRINCIPAL_CLAIM")]
    pub jwt_principal_claim: Option<String>,
    /// With `--jwt-keys`: clock skew tolerated on `exp` and `nbf`, in ms [default: 30000]
    #[arg(long, value_name = "MS", env = "ELEVATE_JWT_LEEWAY_MS")]
    pub jwt_leeway_ms: Option<u64>,
}

impl ServeArgs {
    /// Flags over the config file over defaults.
    ///
    /// # Errors
    /// The config file or a value is unusable.
    pub fn config(&self) -> Result<Config, ConfigError> {
        self.configs().map(|(config, _)| config)
    }

    /// As [`ServeArgs::config`], plus the remote grant feed when `--grants-url` is set.
    ///
    /// # Errors
    /// The config file or a value is unusable.
    pub fn configs(&self) -> Result<(Config, Option<RemoteFeedConfig>), ConfigError> {
        let file = self.inputs.file_config()?;
        let remote_feed = match self.inputs.grants_url(&file)? {
            Some(url) => {
                let max_age = match self.max_feed_age_ms.or(file.max_feed_age_ms) {
                    Some(v) => Duration::from_millis(config::nonzero("max-feed-age-ms", v)?),
                    None => config::DEFAULT_MAX_FEED_AGE,
                };
                let tls = self.feed_tls(&file, &url)?;
                Some(RemoteFeedConfig {
                    tls,
                    ..RemoteFeedConfig::new(url, max_age)
                })
            }
            None => None,
        };
        if remote_feed.is_none() {
            self.feed_tls_unused(&file)?;
        }
        let mut sources = self.inputs.sources(&file);
        let workflow = self.workflow_settings(&file)?;
        if workflow.is_some() {
            if remote_feed.is_some() {
                return Err(ConfigError::WorkflowWithFeed {
                    option: "--grants-url",
                });
            }
            if self.inputs.grants.is_some() || file.grants.is_some() {
                return Err(ConfigError::WorkflowWithFeed { option: "--grants" });
            }
            sources.grants = None;
        }
        let listen = self.listen.clone().or_else(|| file.listen.clone());
        let listen =
            match config::parse_listen(listen.as_deref().unwrap_or(config::DEFAULT_LISTEN))? {
                config::Listen::Tcp(addr) => addr,
                // `HttpConfig::listen` is a TCP address; the socket is bound from
                // `ServeArgs::unix_socket`, and this only names AuthZEN's fallback host.
                config::Listen::Unix(_) => HttpConfig::default().listen,
            };
        let ms = |name,
                  flag: Option<u64>,
                  file: Option<u64>,
                  default: Duration|
         -> Result<Duration, ConfigError> {
            match flag.or(file) {
                Some(v) => Ok(Duration::from_millis(config::nonzero(name, v)?)),
                None => Ok(default),
            }
        };
        let decision_log = self
            .decision_log
            .clone()
            .or_else(|| file.decision_log.clone())
            .map_or(config::DecisionLog::Off, |v| config::parse_decision_log(&v));
        let mut config = Config {
            sources,
            reload: ReloadConfig {
                debounce: ms(
                    "debounce-ms",
                    self.debounce_ms,
                    file.debounce_ms,
                    config::DEFAULT_DEBOUNCE,
                )?,
                rescan: ms(
                    "rescan-ms",
                    self.rescan_ms,
                    file.rescan_ms,
                    config::DEFAULT_RESCAN,
                )?,
                nice: match self.reload_nice.or(file.reload_nice) {
                    Some(value) if !crate::priority::valid_step(value) => {
                        return Err(ConfigError::ReloadNice { value });
                    }
                    Some(value) => value,
                    None => crate::priority::DEFAULT_RELOAD_NICE,
                },
            },
            http: HttpConfig {
                listen,
                max_body: self
                    .limits
                    .max_body_bytes
                    .or(file.max_body_bytes)
                    .unwrap_or(config::DEFAULT_MAX_BODY),
                header_timeout: ms(
                    "header-timeout-ms",
                    self.limits.header_timeout_ms,
                    file.header_timeout_ms,
                    config::DEFAULT_HEADER_TIMEOUT,
                )?,
                idle_timeout: ms(
                    "idle-timeout-ms",
                    self.limits.idle_timeout_ms,
                    file.idle_timeout_ms,
                    config::DEFAULT_IDLE_TIMEOUT,
                )?,
                max_connections: self
                    .limits
                    .max_connections
                    .or(file.max_connections)
                    .unwrap_or(config::DEFAULT_MAX_CONNECTIONS),
                decision_cache_bytes: self
                    .decision_cache_bytes
                    .or(file.decision_cache_bytes)
                    .unwrap_or(config::DEFAULT_DECISION_CACHE_BYTES),
                ..HttpConfig::default()
            },
            decision_log,
            decision_queue: self
                .decision_queue
                .or(file.decision_queue)
                .unwrap_or(config::DEFAULT_DECISION_QUEUE),
            shutdown_grace: ms(
                "shutdown-grace-ms",
                self.shutdown_grace_ms,
                file.shutdown_grace_ms,
                config::DEFAULT_SHUTDOWN_GRACE,
            )?,
            workflow,
        };
        self.limits.apply(&file, &mut config.http)?;
        Ok((config, remote_feed))
    }

    /// The gateway endpoints' settings, when a route table is named (or the embedded
    /// default applies); `None` otherwise.
    ///
    /// # Errors
    /// The config file or a value is unusable, or a gateway option is set without a
    /// route table.
    pub fn gateway_config(&self) -> Result<Option<crate::gateway::Config>, ConfigError> {
        let file = self.inputs.file_config()?;
        let header_option = |option: &'static str, flag: &Option<String>, file: &Option<String>| {
            flag.clone().or_else(|| file.clone()).map(|v| (option, v))
        };
        let principal_header = header_option(
            "principal-header",
            &self.gateway.principal_header,
            &file.principal_header,
        );
        let principal_type = header_option(
            "principal-type",
            &self.gateway.principal_type,
            &file.principal_type,
        );
        let client_ip_header = header_option(
            "client-ip-header",
            &self.gateway.client_ip_header,
            &file.client_ip_header,
        );
        let routes = self
            .gateway
            .routes
            .clone()
            .or_else(|| file.routes.clone())
            .or_else(|| {
                let embedded = self.workflow.is_none()
                    && file.workflow.is_none()
                    && self.names_no_input(&file);
                embedded.then(|| config::DEFAULT_ROUTES.into())
            });
        let jwt_keys = self
            .gateway
            .jwt_keys
            .clone()
            .or_else(|| file.jwt_keys.clone());
        let jwt_issuer = header_option("jwt-issuer", &self.gateway.jwt_issuer, &file.jwt_issuer);
        let jwt_audience = header_option(
            "jwt-audience",
            &self.gateway.jwt_audience,
            &file.jwt_audience,
        );
        let jwt_principal_claim = header_option(
            "jwt-principal-claim",
            &self.gateway.jwt_principal_claim,
            &file.jwt_principal_claim,
        );
        let jwt_leeway_ms = self.gateway.jwt_leeway_ms.or(file.jwt_leeway_ms);
        let Some(routes) = routes else {
            if let Some((option, _)) = principal_header
                .as_ref()
                .or(principal_type.as_ref())
                .or(client_ip_header.as_ref())
                .or(jwt_issuer.as_ref())
                .or(jwt_audience.as_ref())
                .or(jwt_principal_claim.as_ref())
            {
                return Err(ConfigError::GatewayWithoutRoutes { option });
            }
            if jwt_keys.is_some() {
                return Err(ConfigError::GatewayWithoutRoutes { option: "jwt-keys" });
            }
            if jwt_leeway_ms.is_some() {
                return Err(ConfigError::GatewayWithoutRoutes {
                    option: "jwt-leeway-ms",
                });
            }
            return Ok(None);
        };
        let jwt = jwt_config(
            jwt_keys,
            jwt_issuer,
            jwt_audience,
            jwt_principal_claim,
            jwt_leeway_ms,
        )?;
        if jwt.is_some()
            && let Some((option, value)) = principal_header.clone()
        {
            return Err(ConfigError::Gateway {
                option,
                value,
                reason: "cannot be used with `--jwt-keys`: with a key set the principal comes \
                         only from the bearer token, so a header cannot override it",
            });
        }
        let header = |(option, value): (&'static str, String)| {
            hyper::header::HeaderName::from_bytes(value.trim().as_bytes()).map_err(|_| {
                ConfigError::Gateway {
                    option,
                    value,
                    reason: "is not an HTTP header name",
                }
            })
        };
        let principal_type = match principal_type {
            Some((option, value)) => {
                value
                    .parse::<cedar_policy::EntityTypeName>()
                    .map_err(|_| ConfigError::Gateway {
                        option,
                        value,
                        reason: "is not a Cedar entity type name like `User`",
                    })?
            }
            None => crate::gateway::DEFAULT_PRINCIPAL_TYPE
                .parse()
                .map_err(|_| ConfigError::Gateway {
                    option: "principal-type",
                    value: crate::gateway::DEFAULT_PRINCIPAL_TYPE.to_owned(),
                    reason: "is not a Cedar entity type name",
                })?,
        };
        let ms = |flag: Option<u64>, file: Option<u64>, default| {
            flag.or(file)
                .filter(|v| *v > 0)
                .map_or(default, Duration::from_millis)
        };
        Ok(Some(crate::gateway::Config {
            routes,
            principal_header: header(principal_header.unwrap_or((
                "principal-header",
                crate::gateway::DEFAULT_PRINCIPAL_HEADER.to_owned(),
            )))?,
            principal_type,
            client_ip_header: client_ip_header.map(header).transpose()?,
            jwt,
            reload: ReloadConfig {
                debounce: ms(self.debounce_ms, file.debounce_ms, config::DEFAULT_DEBOUNCE),
                rescan: ms(self.rescan_ms, file.rescan_ms, config::DEFAULT_RESCAN),
                ..ReloadConfig::default()
            },
        }))
    }

    /// The signed-feed settings: flags replace the config file's lists (so a key can be
    /// dropped from the command line), and each list needs its side of the feed.
    ///
    /// # Errors
    /// The config file is unusable, signing keys without a workflow, or public keys
    /// with one.
    pub fn feed_signing_config(&self) -> Result<config::FeedSigningConfig, ConfigError> {
        let file = self.inputs.file_config()?;
        let pick = |flags: &Vec<PathBuf>, file: &Vec<PathBuf>| {
            if flags.is_empty() {
                file.clone()
            } else {
                flags.clone()
            }
        };
        let public_keys = pick(&self.signing.feed_public_keys, &file.feed_public_key);
        let signing_keys = pick(&self.signing.feed_signing_keys, &file.feed_signing_key);
        let workflow = self.workflow_settings(&file)?.is_some();
        if !signing_keys.is_empty() && !workflow {
            return Err(ConfigError::SigningKeyWithoutWorkflow);
        }
        if !public_keys.is_empty() && workflow {
            return Err(ConfigError::PublicKeyWithWorkflow);
        }
        let max_skew = self
            .signing
            .feed_max_skew_ms
            .or(file.feed_max_skew_ms)
            .map_or(crate::signing::DEFAULT_MAX_SKEW, Duration::from_millis);
        Ok(config::FeedSigningConfig {
            public_keys,
            max_skew,
            signing_keys,
        })
    }

    /// The listener's TLS files, when `--tls-cert` is set (flags over the file).
    ///
    /// # Errors
    /// The config file is unusable, or a certificate comes without its key (or the
    /// other way round), or a client CA without TLS.
    pub fn tls_config(&self) -> Result<Option<config::ServerTlsConfig>, ConfigError> {
        let file = self.inputs.file_config()?;
        let pick =
            |flag: &Option<PathBuf>, file: &Option<PathBuf>| flag.clone().or_else(|| file.clone());
        let cert = pick(&self.tls.tls_cert, &file.tls_cert);
        let key = pick(&self.tls.tls_key, &file.tls_key);
        let client_ca = pick(&self.tls.tls_client_ca, &file.tls_client_ca);
        let (cert, key) = match (cert, key) {
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                return Err(ConfigError::TlsPair {
                    given: "tls-cert",
                    missing: "tls-key",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::TlsPair {
                    given: "tls-key",
                    missing: "tls-cert",
                });
            }
            (None, None) if client_ca.is_some() => return Err(ConfigError::ClientCaWithoutTls),
            (None, None) => return Ok(None),
        };
        let ms = |flag: Option<u64>, file: Option<u64>, default| {
            flag.or(file)
                .filter(|v| *v > 0)
                .map_or(default, Duration::from_millis)
        };
        Ok(Some(config::ServerTlsConfig {
            cert,
            key,
            client_ca,
            reload: ReloadConfig {
                debounce: ms(self.debounce_ms, file.debounce_ms, config::DEFAULT_DEBOUNCE),
                rescan: ms(self.rescan_ms, file.rescan_ms, config::DEFAULT_RESCAN),
                ..ReloadConfig::default()
            },
        }))
    }

    /// The grant feed client's TLS, and the refusal of plain HTTP across a network
    /// without signed feeds: a forged feed would grant anyone elevation.
    fn feed_tls(
        &self,
        file: &FileConfig,
        url: &config::FeedUrl,
    ) -> Result<config::ClientTlsConfig, ConfigError> {
        let pick =
            |flag: &Option<PathBuf>, file: &Option<PathBuf>| flag.clone().or_else(|| file.clone());
        let ca = pick(&self.tls.feed_ca, &file.feed_ca);
        let cert = pick(&self.tls.feed_client_cert, &file.feed_client_cert);
        let key = pick(&self.tls.feed_client_key, &file.feed_client_key);
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (Some(_), None) => {
                return Err(ConfigError::TlsPair {
                    given: "feed-client-cert",
                    missing: "feed-client-key",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::TlsPair {
                    given: "feed-client-key",
                    missing: "feed-client-cert",
                });
            }
            (None, None) => None,
        };
        if !url.is_https() {
            if ca.is_some() {
                return Err(ConfigError::FeedTlsWithoutHttps { option: "feed-ca" });
            }
            if identity.is_some() {
                return Err(ConfigError::FeedTlsWithoutHttps {
                    option: "feed-client-cert",
                });
            }
            let signed =
                !self.signing.feed_public_keys.is_empty() || !file.feed_public_key.is_empty();
            let allowed = self.tls.allow_insecure_feed || file.allow_insecure_feed.unwrap_or(false);
            if !url.is_loopback() && !signed && !allowed {
                return Err(ConfigError::InsecureFeed {
                    url: url.to_string(),
                });
            }
        }
        Ok(config::ClientTlsConfig { ca, identity })
    }

    /// Feed TLS flags without a feed URL are a mistake, not a no-op.
    fn feed_tls_unused(&self, file: &FileConfig) -> Result<(), ConfigError> {
        let named = [
            (
                "feed-ca",
                self.tls.feed_ca.is_some() || file.feed_ca.is_some(),
            ),
            (
                "feed-client-cert",
                self.tls.feed_client_cert.is_some() || file.feed_client_cert.is_some(),
            ),
            (
                "feed-client-key",
                self.tls.feed_client_key.is_some() || file.feed_client_key.is_some(),
            ),
        ];
        match named.iter().find(|(_, set)| *set) {
            Some((option, _)) => Err(ConfigError::FeedTlsWithoutHttps { option }),
            None => Ok(()),
        }
    }

    /// No input named anywhere: the shipped defaults, which include the workflow.
    fn names_no_input(&self, file: &FileConfig) -> bool {
        let i = &self.inputs;
        i.policies.is_none()
            && i.schema.is_none()
            && i.entities.is_none()
            && i.grants.is_none()
            && i.grants_url.is_none()
            && file.policies.is_none()
            && file.schema.is_none()
            && file.entities.is_none()
            && file.grants.is_none()
            && file.grants_url.is_none()
    }

    fn workflow_settings(
        &self,
        file: &FileConfig,
    ) -> Result<Option<WorkflowSettings>, ConfigError> {
        let named = self.workflow.clone().or_else(|| file.workflow.clone());
        let embedded = named.is_none() && self.names_no_input(file);
        let Some(data_dir) =
            named.or_else(|| embedded.then(|| config::DEFAULT_WORKFLOW_DIR.into()))
        else {
            return Ok(None);
        };
        let tokens = self
            .tokens
            .clone()
            .or_else(|| file.tokens.clone())
            .or_else(|| embedded.then(|| config::DEFAULT_TOKENS.into()))
            .ok_or(ConfigError::WorkflowWithoutTokens)?;
        let feed_file = match self.feed_file.clone().or_else(|| file.feed_file.clone()) {
            Some(v) if v == "off" => None,
            Some(v) => Some(PathBuf::from(v)),
            None => Some(data_dir.join(crate::workflow::service::FEED_FILE)),
        };
        let ttl = self
            .request_ttl
            .clone()
            .or_else(|| file.request_ttl.clone())
            .unwrap_or_else(|| config::DEFAULT_REQUEST_TTL.to_owned());
        let mut webhooks = file.webhooks.clone();
        webhooks.extend(self.webhooks.iter().cloned());
        Ok(Some(WorkflowSettings {
            data_dir,
            tokens,
            feed_file,
            request_ttl: config::parse_duration("request-ttl", &ttl)?,
            webhooks,
        }))
    }
}

impl ServeArgs {
    /// The socket file of `--listen unix:/path` (flag over config file), if that is
    /// where the API listens.
    ///
    /// # Errors
    /// The config file or the value is unusable.
    pub fn unix_socket(&self) -> Result<Option<PathBuf>, ConfigError> {
        let file = self.inputs.file_config()?;
        let listen = self.listen.clone().or_else(|| file.listen.clone());
        Ok(
            match config::parse_listen(listen.as_deref().unwrap_or(config::DEFAULT_LISTEN))? {
                config::Listen::Unix(path) => Some(path),
                config::Listen::Tcp(_) => None,
            },
        )
    }
}

pub fn run(args: ServeArgs) -> u8 {
    let (config, remote_feed) = match args.configs() {
        Ok(c) => c,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(crate::priority::worker_parked)
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return EXIT_FAILURE;
        }
    };
    let gateway = match args.gateway_config() {
        Ok(g) => g,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_FAILURE;
        }
    };
    let grpc_listen = match args
        .gateway
        .grpc_listen
        .as_deref()
        .map(config::parse_listen)
    {
        None => None,
        Some(Ok(_)) if gateway.is_none() => {
            eprintln!("error: `--grpc-listen` needs a route table (`--routes FILE`)");
            return EXIT_FAILURE;
        }
        Some(Ok(config::Listen::Tcp(addr))) => Some(addr),
        Some(Ok(config::Listen::Unix(_))) => {
            eprintln!("error: --grpc-listen: a TCP address like `127.0.0.1:8181` is needed");
            return EXIT_FAILURE;
        }
        Some(Err(err)) => {
            eprintln!("error: --grpc-listen: {err}");
            return EXIT_FAILURE;
        }
    };
    let signing = match args.feed_signing_config() {
        Ok(s) => s,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_FAILURE;
        }
    };
    let unix = match args.unix_socket() {
        Ok(u) => u,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_FAILURE;
        }
    };
    let tls = match args.tls_config() {
        Ok(t) => t,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_FAILURE;
        }
    };
    runtime.block_on(serve(
        config,
        remote_feed,
        gateway,
        grpc_listen,
        signing,
        (unix, tls),
    ))
}

async fn serve(
    config: Config,
    remote_feed: Option<RemoteFeedConfig>,
    gateway: Option<crate::gateway::Config>,
    grpc_listen: Option<std::net::SocketAddr>,
    signing: config::FeedSigningConfig,
    (unix, tls): (Option<PathBuf>, Option<config::ServerTlsConfig>),
) -> u8 {
    let listen = unix.map_or(
        config::Listen::Tcp(config.http.listen),
        config::Listen::Unix,
    );
    let listener = match http::listener::Bound::bind(&listen).await {
        Ok(l) => l,
        Err(err) => {
            let shown = match &listen {
                config::Listen::Tcp(addr) => addr.to_string(),
                config::Listen::Unix(path) => format!("unix:{}", path.display()),
            };
            eprintln!("error: cannot listen on {shown}: {err}");
            return EXIT_FAILURE;
        }
    };
    let grpc = match grpc_listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(err) => {
                eprintln!("error: cannot listen on {addr} (--grpc-listen): {err}");
                return EXIT_FAILURE;
            }
        },
        None => None,
    };
    let cancel = CancellationToken::new();
    crate::shutdown::cancel_on_signal(cancel.clone());
    let options = StartOptions {
        remote_feed,
        gateway,
        grpc,
        signing,
        tls,
    };
    let running = match start_with_options(
        config,
        options,
        listener,
        http::system_clock(),
        prometheus::Registry::new(),
        cancel,
    ) {
        Ok(r) => r,
        Err(err @ StartError::Routes(_)) => {
            eprintln!("error: {err}");
            return EXIT_INVALID;
        }
        Err(StartError::Load(err)) => {
            eprintln!("error: {err}");
            return EXIT_INVALID;
        }
        Err(err @ (StartError::Tls(_) | StartError::FeedTls(_))) => {
            eprintln!("error: {err}");
            return EXIT_INVALID;
        }
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_FAILURE;
        }
    };
    match running.wait().await {
        Ok(()) => {
            tracing::info!("stopped");
            EXIT_OK
        }
        Err(err) => {
            tracing::error!(error = %err, "server failed");
            EXIT_FAILURE
        }
    }
}

/// The JWT settings from their flags or file keys: `None` without a key set; issuer
/// and audience are required with one, so a token minted for another service or by
/// another issuer never names a principal here.
fn jwt_config(
    keys: Option<PathBuf>,
    issuer: Option<(&'static str, String)>,
    audience: Option<(&'static str, String)>,
    principal_claim: Option<(&'static str, String)>,
    leeway_ms: Option<u64>,
) -> Result<Option<crate::gateway::jwt::Config>, ConfigError> {
    let Some(keys) = keys else {
        if let Some((option, value)) = issuer.or(audience).or(principal_claim) {
            return Err(ConfigError::Gateway {
                option,
                value,
                reason: "needs `--jwt-keys FILE`, the key set that verifies the tokens",
            });
        }
        if let Some(ms) = leeway_ms {
            return Err(ConfigError::Gateway {
                option: "jwt-leeway-ms",
                value: ms.to_string(),
                reason: "needs `--jwt-keys FILE`, the key set that verifies the tokens",
            });
        }
        return Ok(None);
    };
    let required = |value: Option<(&'static str, String)>, option: &'static str| {
        let (option, value) = value.unwrap_or((option, String::new()));
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(ConfigError::Gateway {
                option,
                value: keys.display().to_string(),
                reason: "is required with `--jwt-keys` (the key set named here): without \
                         it a token meant for another service or issuer would be accepted",
            });
        }
        Ok(trimmed.to_owned())
    };
    let issuer = required(issuer, "jwt-issuer")?;
    let audience = required(audience, "jwt-audience")?;
    let principal_claim = match principal_claim {
        Some((option, value)) if value.trim().is_empty() => {
            return Err(ConfigError::Gateway {
                option,
                value,
                reason: "must name a claim, like `sub`",
            });
        }
        Some((_, value)) => value.trim().to_owned(),
        None => crate::gateway::jwt::DEFAULT_PRINCIPAL_CLAIM.to_owned(),
    };
    Ok(Some(crate::gateway::jwt::Config {
        keys,
        issuer,
        audience,
        principal_claim,
        // Zero is a valid leeway: no skew tolerated.
        leeway: leeway_ms.map_or(crate::gateway::jwt::DEFAULT_LEEWAY, Duration::from_millis),
    }))
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Load(#[from] crate::snapshot::LoadError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot open the decision log: {0}")]
    DecisionLog(std::io::Error),
    #[error("cannot watch the inputs: {0}")]
    Watch(#[from] notify::Error),
    #[error("workflow: {0}")]
    Workflow(#[from] ServiceError),
    #[error("tokens: {0}")]
    Tokens(#[from] TokensError),
    #[error("webhook: {0}")]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    Routes(#[from] crate::gateway::RoutesError),
    #[error("feed signing: {0}")]
    Keys(#[from] crate::signing::KeyError),
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::LoadError),
    #[error("grant feed tls: {0}")]
    FeedTls(#[from] crate::tls::TlsError),
}

/// A started server: its address, its store, and the task that ends after shutdown.
pub struct Running {
    /// The TCP address served; `0.0.0.0:0` on a Unix socket.
    pub addr: std::net::SocketAddr,
    pub store: Arc<Store>,
    pub cancel: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Waits until the server has drained, the reloader stopped and the log is synced.
    ///
    /// # Errors
    /// The server failed.
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }

    /// Cancels and waits.
    ///
    /// # Errors
    /// The server failed.
    pub async fn stop(self) -> std::io::Result<()> {
        self.cancel.cancel();
        self.wait().await
    }
}

/// Loads the inputs and serves on `listener` until `cancel`: the entry point of
/// `serve` and of the integration tests (which bind `127.0.0.1:0`).
///
/// # Errors
/// An input is invalid at startup (fatal), or metrics, the log or the watcher fail.
pub fn start(
    config: Config,
    listener: tokio::net::TcpListener,
    clock: http::Clock,
    registry: prometheus::Registry,
    cancel: CancellationToken,
) -> Result<Running, StartError> {
    start_with_feed(config, None, listener, clock, registry, cancel)
}

/// As [`start`], with the grants from a remote feed when `remote_feed` is set
/// (`config.sources.grants` must then be `None`). The server starts at once and serves
/// the static policies; grants are suspended, and `/readyz` is 503, until the first
/// good document arrives.
///
/// # Errors
/// As [`start`].
pub fn start_with_feed(
    config: Config,
    remote_feed: Option<RemoteFeedConfig>,
    listener: tokio::net::TcpListener,
    clock: http::Clock,
    registry: prometheus::Registry,
    cancel: CancellationToken,
) -> Result<Running, StartError> {
    start_with_gateway(config, remote_feed, None, listener, clock, registry, cancel)
}

/// As [`start_with_feed`], serving `/v1/forward-auth` from the route table that
/// `gateway` names (loaded at startup, fatal if bad, then hot-reloaded).
///
/// # Errors
/// As [`start`], or the route table is invalid.
pub fn start_with_gateway(
    config: Config,
    remote_feed: Option<RemoteFeedConfig>,
    gateway: Option<crate::gateway::Config>,
    listener: tokio::net::TcpListener,
    clock: http::Clock,
    registry: prometheus::Registry,
    cancel: CancellationToken,
) -> Result<Running, StartError> {
    start_with_grpc(
        config,
        remote_feed,
        gateway,
        listener,
        None,
        clock,
        registry,
        cancel,
    )
}

/// As [`start_with_gateway`], also serving Envoy's ext_authz gRPC service on
/// `grpc` when given (`--grpc-listen`).
///
/// # Errors
/// As [`start_with_gateway`].
#[allow(clippy::too_many_arguments)]
pub fn start_with_grpc(
    config: Config,
    remote_feed: Option<RemoteFeedConfig>,
    gateway: Option<crate::gateway::Config>,
    listener: tokio::net::TcpListener,
    grpc: Option<tokio::net::TcpListener>,
    clock: http::Clock,
    registry: prometheus::Registry,
    cancel: CancellationToken,
) -> Result<Running, StartError> {
    let options = StartOptions {
        remote_feed,
        gateway,
        grpc,
        signing: config::FeedSigningConfig::default(),
        tls: None,
    };
    start_with_options(config, options, listener, clock, registry, cancel)
}

/// What a server can be started with besides its [`Config`]; the default is none of it.
#[derive(Debug, Default)]
pub struct StartOptions {
    /// The grants from a remote feed (`config.sources.grants` must then be `None`).
    pub remote_feed: Option<RemoteFeedConfig>,
    /// `/v1/forward-auth`'s route table.
    pub gateway: Option<crate::gateway::Config>,
    /// Envoy's ext_authz gRPC listener.
    pub grpc: Option<tokio::net::TcpListener>,
    /// Signed feeds: keys to verify the feed with, or to sign the workflow's with.
    pub signing: config::FeedSigningConfig,
    /// TLS on the listener (`--tls-cert`), reloaded when its files change.
    pub tls: Option<config::ServerTlsConfig>,
}

/// The most general start: every other `start_*` is this with some options.
///
/// # Errors
/// As [`start_with_gateway`], or a feed key file cannot be read.
pub fn start_with_options(
    config: Config,
    options: StartOptions,
    listener: impl http::listener::Listener,
    clock: http::Clock,
    registry: prometheus::Registry,
    cancel: CancellationToken,
) -> Result<Running, StartError> {
    let StartOptions {
        remote_feed,
        gateway,
        grpc,
        signing,
        tls,
    } = options;
    let tls = tls
        .map(|config| crate::tls::ServerTls::load(config, &registry))
        .transpose()?;
    let trust = if signing.public_keys.is_empty() {
        None
    } else {
        let trust = crate::signing::FeedTrust::load(&signing.public_keys, signing.max_skew)?;
        tracing::info!(keys = ?trust.key_ids(), "grant feeds must be signed by one of these keys");
        Some(trust)
    };
    let signers = signing
        .signing_keys
        .iter()
        .map(|path| crate::signing::FeedSigner::load(path))
        .collect::<Result<Vec<_>, _>>()?;
    let metrics = Arc::new(Metrics::new(registry)?);
    let store = Arc::new(match &config.workflow {
        Some(w) => Store::open_following(
            config.sources.clone(),
            format!("workflow:{}", w.data_dir.display()),
            Arc::clone(&metrics),
            clock(),
        )?,
        None => Store::open_trusting(
            config.sources.clone(),
            remote_feed.as_ref(),
            trust,
            Arc::clone(&metrics),
            clock(),
        )?,
    });
    let mut tasks = Vec::new();
    let gateway = match gateway {
        Some(settings) => {
            let gateway =
                crate::gateway::Gateway::load(settings, Arc::clone(&store), Arc::clone(&metrics))?;
            tasks.push(gateway.spawn_watcher(cancel.clone())?);
            Some(gateway)
        }
        None => None,
    };
    let workflow = match &config.workflow {
        Some(settings) => {
            let (api, started) = start_workflow(settings, signers, &store, &clock, &cancel)?;
            tasks.extend(started);
            Some(api)
        }
        None => None,
    };
    let (log, writer) = DecisionLog::spawn(
        &config.decision_log,
        config.decision_queue,
        Arc::clone(&metrics),
    )
    .map_err(StartError::DecisionLog)?;
    let reloader =
        snapshot::spawn_reloader(Arc::clone(&store), config.reload.clone(), cancel.clone())?;
    let fetcher = remote_feed
        .map(|feed| {
            crate::remote::spawn(Arc::clone(&store), feed, Arc::clone(&clock), cancel.clone())
        })
        .transpose()?;
    if let Some(tls) = &tls {
        tasks.push(tls.spawn_watcher(cancel.clone())?);
        if tls.has_client_ca() {
            tracing::info!(
                "serving tls; GET /v1/grants needs a client certificate from the client CA"
            );
        } else {
            tracing::info!("serving tls; no client CA, so GET /v1/grants is served to any client");
        }
    }
    let listener = http::listener::Secured::new(listener, tls.clone());
    // A Unix socket has no address: `Running::addr` is then `0.0.0.0:0`.
    let addr = listener
        .tcp_addr()
        .unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    let snap = store.current();
    tracing::info!(
        listen = %listener.describe(),
        generation = snap.generation,
        policies = snap.bundle.statics.policies().count(),
        roles = snap.bundle.roles.len(),
        entities = snap.store.len(),
        grants = snap.grants.len(),
        grants_url = store.remote_feed_url(),
        "elevate serving"
    );
    drop(snap);
    let app = Arc::new(App {
        store: Arc::clone(&store),
        metrics,
        log,
        config: config.http.clone(),
        clock,
        workflow,
        gateway,
        tls,
        cache: http::DecisionCache::new(config.http.decision_cache_bytes),
    });
    let token = cancel.clone();
    let grpc = grpc.map(|grpc| {
        if let Ok(addr) = grpc.local_addr() {
            tracing::info!(grpc_listen = %addr, "serving Envoy ext_authz over gRPC");
        }
        tokio::spawn(crate::envoy::serve(grpc, Arc::clone(&app), token.clone()))
    });
    let task = tokio::spawn(async move {
        let result = http::serve(listener, app, token.clone(), config.shutdown_grace).await;
        token.cancel();
        let result = match grpc {
            Some(mut grpc) => {
                // Envoy holds its HTTP/2 connections open; draining them gets the
                // same grace as HTTP, then they are cut.
                let grpc = match tokio::time::timeout(config.shutdown_grace, &mut grpc).await {
                    Ok(joined) => joined.unwrap_or_else(|e| Err(std::io::Error::other(e))),
                    Err(_) => {
                        tracing::warn!("gRPC shutdown grace period over; closing connections");
                        grpc.abort();
                        Ok(())
                    }
                };
                result.and(grpc)
            }
            None => result,
        };
        let _ = reloader.await;
        if let Some(fetcher) = fetcher {
            let _ = fetcher.await;
        }
        for task in tasks {
            let _ = task.await;
        }
        // The writer thread drains and syncs; blocking here is the point of shutting down.
        let _ = tokio::task::spawn_blocking(move || writer.finish()).await;
        result
    });
    Ok(Running {
        addr,
        store,
        cancel,
        task,
    })
}

/// Opens the workflow on `store` and starts its tasks: the ticker, the tokens
/// watcher and the webhook sender.
fn start_workflow(
    settings: &WorkflowSettings,
    signers: Vec<crate::signing::FeedSigner>,
    store: &Arc<Store>,
    clock: &http::Clock,
    cancel: &CancellationToken,
) -> Result<(Arc<WorkflowApi>, Vec<tokio::task::JoinHandle<()>>), StartError> {
    let tokens = Tokens::load(settings.tokens.clone())?;
    let targets = settings
        .webhooks
        .iter()
        .map(|spec| crate::webhook::parse_target(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tasks = Vec::new();
    let webhooks = if targets.is_empty() {
        Webhooks::disabled()
    } else {
        let (webhooks, task) = Webhooks::spawn(
            WebhookConfig {
                targets,
                ..WebhookConfig::default()
            },
            cancel.clone(),
        );
        tasks.push(task);
        webhooks
    };
    let mut service_config = ServiceConfig::new(settings.data_dir.clone());
    service_config.feed_file.clone_from(&settings.feed_file);
    service_config.workflow.request_ttl = settings.request_ttl;
    if !signers.is_empty() {
        let ids: Vec<&str> = signers.iter().map(|s| s.id()).collect();
        tracing::info!(keys = ?ids, "signing every grant feed revision");
    }
    service_config.signers = signers;
    let service = Service::open(
        service_config,
        Arc::clone(store),
        webhooks,
        Arc::clone(clock),
    )?;
    tasks.push(service.spawn_ticker(cancel.clone()));
    tasks.push(tokens.spawn_watcher(cancel.clone())?);
    let api = Arc::new(WorkflowApi {
        service,
        tokens,
        shutdown: cancel.clone(),
    });
    Ok((api, tasks))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn serve_args(args: &[&str]) -> ServeArgs {
        let argv = ["elevate", "serve"].iter().chain(args).copied();
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => *args,
            _ => panic!("not serve"),
        }
    }

    fn toml_file(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn http_limits_come_from_flags_over_the_file_over_safe_defaults() {
        let defaults = serve_args(&[]).config().unwrap().http;
        assert_eq!(defaults.max_header_bytes, config::DEFAULT_MAX_HEADER_BYTES);
        assert_eq!(defaults.max_headers, config::DEFAULT_MAX_HEADERS);
        assert_eq!(defaults.h2_max_streams, config::DEFAULT_H2_MAX_STREAMS);
        assert_eq!(
            defaults.h2_max_pending_resets,
            config::DEFAULT_H2_MAX_PENDING_RESETS
        );
        assert_eq!(defaults.max_json_depth, config::DEFAULT_MAX_JSON_DEPTH);
        assert_eq!(defaults.body_timeout, config::DEFAULT_BODY_TIMEOUT);

        let file = toml_file(
            "max-header-bytes = 9000\nmax-headers = 20\nh2-max-streams = 8\n\
             h2-max-pending-resets = 3\nmax-json-depth = 10\nbody-timeout-ms = 700\n",
        );
        let path = file.path().to_str().unwrap();
        let http = serve_args(&["--config", path]).config().unwrap().http;
        assert_eq!(
            (
                http.max_header_bytes,
                http.max_headers,
                http.h2_max_streams,
                http.h2_max_pending_resets,
                http.max_json_depth
            ),
            (9000, 20, 8, 3, 10)
        );
        assert_eq!(http.body_timeout, Duration::from_millis(700));
        let http = serve_args(&[
            "--config",
            path,
            "--max-json-depth",
            "5",
            "--h2-max-streams",
            "2",
        ])
        .config()
        .unwrap()
        .http;
        assert_eq!(
            (http.max_json_depth, http.h2_max_streams, http.max_headers),
            (5, 2, 20)
        );

        let err = serve_args(&["--max-header-bytes", "4096"])
            .config()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "`max-header-bytes` must be at least 8192, not 4096"
        );
        for flag in [
            "--max-headers",
            "--h2-max-streams",
            "--h2-max-pending-resets",
            "--max-json-depth",
        ] {
            let err = serve_args(&[flag, "0"]).config().unwrap_err();
            assert!(
                err.to_string().contains("must be greater than zero"),
                "{flag}: {err}"
            );
            assert!(err.to_string().contains(&flag[2..]), "{flag}: {err}");
        }
    }

    #[test]
    fn grants_url_replaces_the_feed_file_with_the_default_max_age() {
        let (config, remote) = serve_args(&["--grants-url", "http://127.0.0.1:9/v1/grants"])
            .configs()
            .unwrap();
        let remote = remote.unwrap();
        assert_eq!(remote.url.to_string(), "http://127.0.0.1:9/v1/grants");
        assert_eq!(remote.max_age, config::DEFAULT_MAX_FEED_AGE);
        // The URL names the grants input: no feed file, and no shipped defaults either.
        assert_eq!(config.sources.grants, None);
        assert_eq!(config.sources.schema, None);
    }

    #[test]
    fn grants_given_an_http_url_follow_it_like_grants_url() {
        let (config, remote) = serve_args(&["--grants", "http://127.0.0.1:9/v1/grants"])
            .configs()
            .unwrap();
        assert_eq!(
            remote.unwrap().url.to_string(),
            "http://127.0.0.1:9/v1/grants"
        );
        assert_eq!(config.sources.grants, None);
        let (_, remote) = serve_args(&["--grants", "https://h/v1/grants"])
            .configs()
            .unwrap();
        assert!(remote.unwrap().url.is_https());
    }

    #[test]
    fn max_feed_age_comes_from_the_flag_or_the_file() {
        let remote = serve_args(&[
            "--grants-url",
            "http://127.0.0.1:9/v1/grants",
            "--max-feed-age-ms",
            "1500",
        ])
        .configs()
        .unwrap()
        .1
        .unwrap();
        assert_eq!(remote.max_age, Duration::from_millis(1500));
        let file = toml_file(
            "grants-url = \"http://feed:80/v1/grants\"\nmax-feed-age-ms = 2000\nallow-insecure-feed = true\n",
        );
        let path = file.path().to_str().unwrap();
        let (config, remote) = serve_args(&["--config", path]).configs().unwrap();
        let remote = remote.unwrap();
        assert_eq!(remote.url.to_string(), "http://feed:80/v1/grants");
        assert_eq!(remote.max_age, Duration::from_secs(2));
        assert_eq!(config.sources.grants, None);
        let zero = serve_args(&[
            "--grants-url",
            "http://h/v1/grants",
            "--max-feed-age-ms",
            "0",
        ]);
        assert!(
            zero.configs()
                .unwrap_err()
                .to_string()
                .contains("max-feed-age-ms")
        );
    }

    #[test]
    fn a_file_and_a_url_are_exclusive_in_one_place_and_flags_win_over_the_file() {
        let both = serve_args(&["--grants", "g.json", "--grants-url", "http://h/v1/grants"]);
        let err = both.configs().unwrap_err().to_string();
        assert!(err.contains("both `grants` and `grants-url`"), "{err}");
        let file = toml_file("grants = \"g.json\"\ngrants-url = \"http://h/v1/grants\"\n");
        let path = file.path().to_str().unwrap();
        let err = serve_args(&["--config", path]).configs().unwrap_err();
        assert!(err.to_string().contains("config file"), "{err}");

        let file = toml_file("grants = \"g.json\"\n");
        let path = file.path().to_str().unwrap();
        let (config, remote) =
            serve_args(&["--config", path, "--grants-url", "https://h/v1/grants"])
                .configs()
                .unwrap();
        assert!(remote.is_some());
        assert_eq!(config.sources.grants, None);
        let file = toml_file("grants-url = \"https://h/v1/grants\"\n");
        let path = file.path().to_str().unwrap();
        let (config, remote) = serve_args(&["--config", path, "--grants", "g.json"])
            .configs()
            .unwrap();
        assert!(remote.is_none());
        assert_eq!(config.sources.grants, Some("g.json".into()));
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        for url in ["file:///tmp/g.json", "h:80/v1/grants"] {
            let err = serve_args(&["--grants-url", url]).configs().unwrap_err();
            assert!(err.to_string().contains(url), "{err}");
        }
    }

    #[test]
    fn plain_http_to_another_host_needs_signed_feeds_or_an_explicit_allowance() {
        let err = serve_args(&["--grants-url", "http://feed.internal/v1/grants"])
            .configs()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`http://feed.internal/v1/grants`")
                && err.contains("--allow-insecure-feed"),
            "{err}"
        );
        for extra in [
            &["--allow-insecure-feed"][..],
            &["--feed-public-key", "k.pub"][..],
        ] {
            let mut args = vec!["--grants-url", "http://feed.internal/v1/grants"];
            args.extend_from_slice(extra);
            assert!(serve_args(&args).configs().is_ok(), "{extra:?}");
        }
        for loopback in [
            "http://127.0.0.1:1/v1/grants",
            "http://localhost:1/v1/grants",
        ] {
            assert!(serve_args(&["--grants-url", loopback]).configs().is_ok());
        }
    }

    #[test]
    fn feed_tls_settings_come_from_flags_or_file_and_need_an_https_feed() {
        let (_, remote) = serve_args(&[
            "--grants-url",
            "https://central:8443/v1/grants",
            "--feed-ca",
            "ca.pem",
            "--feed-client-cert",
            "c.pem",
            "--feed-client-key",
            "k.pem",
        ])
        .configs()
        .unwrap();
        let tls = remote.unwrap().tls;
        assert_eq!(tls.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(tls.identity, Some(("c.pem".into(), "k.pem".into())));

        let file = toml_file(
            "grants-url = \"https://central/v1/grants\"\nfeed-ca = \"f.pem\"\nfeed-client-cert = \"fc.pem\"\nfeed-client-key = \"fk.pem\"\n",
        );
        let path = file.path().to_str().unwrap();
        let tls = serve_args(&["--config", path, "--feed-ca", "flag.pem"])
            .configs()
            .unwrap()
            .1
            .unwrap()
            .tls;
        assert_eq!(tls.ca, Some(PathBuf::from("flag.pem")), "flags win");
        assert_eq!(tls.identity, Some(("fc.pem".into(), "fk.pem".into())));

        let err = |args: &[&str]| serve_args(args).configs().unwrap_err().to_string();
        let e = err(&[
            "--grants-url",
            "https://c/v1/grants",
            "--feed-client-cert",
            "c.pem",
        ]);
        assert!(
            e.contains("`--feed-client-cert` needs `--feed-client-key`"),
            "{e}"
        );
        let e = err(&[
            "--grants-url",
            "https://c/v1/grants",
            "--feed-client-key",
            "k.pem",
        ]);
        assert!(
            e.contains("`--feed-client-key` needs `--feed-client-cert`"),
            "{e}"
        );
        let e = err(&[
            "--grants-url",
            "http://127.0.0.1:1/v1/grants",
            "--feed-ca",
            "ca.pem",
        ]);
        assert!(e.contains("`--feed-ca`") && e.contains("https://"), "{e}");
        let e = err(&["--grants", "g.json", "--feed-ca", "ca.pem"]);
        assert!(e.contains("`--feed-ca`"), "{e}");
    }

    #[test]
    fn listener_tls_needs_both_halves_and_a_client_ca_needs_tls() {
        assert_eq!(serve_args(&[]).tls_config().unwrap(), None);
        let tls = serve_args(&[
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-ca",
            "ca.pem",
            "--debounce-ms",
            "50",
        ])
        .tls_config()
        .unwrap()
        .unwrap();
        assert_eq!(tls.cert, PathBuf::from("c.pem"));
        assert_eq!(tls.key, PathBuf::from("k.pem"));
        assert_eq!(tls.client_ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(tls.reload.debounce, Duration::from_millis(50));

        let file = toml_file("tls-cert = \"fc.pem\"\ntls-key = \"fk.pem\"\n");
        let path = file.path().to_str().unwrap();
        let tls = serve_args(&["--config", path, "--tls-cert", "flag.pem"])
            .tls_config()
            .unwrap()
            .unwrap();
        assert_eq!(tls.cert, PathBuf::from("flag.pem"));
        assert_eq!(tls.key, PathBuf::from("fk.pem"));
        assert_eq!(tls.client_ca, None);

        let err = |args: &[&str]| serve_args(args).tls_config().unwrap_err().to_string();
        assert!(err(&["--tls-cert", "c"]).contains("`--tls-cert` needs `--tls-key`"));
        assert!(err(&["--tls-key", "k"]).contains("`--tls-key` needs `--tls-cert`"));
        assert!(err(&["--tls-client-ca", "ca"]).contains("--tls-cert"));
    }

    #[test]
    fn with_no_input_named_the_embedded_default_runs_the_workflow() {
        let (config, remote) = serve_args(&[]).configs().unwrap();
        assert!(remote.is_none());
        // The workflow's feed is the grants: no feed file is read.
        assert_eq!(config.sources.grants, None);
        assert_eq!(
            config.sources.entities,
            Some(config::DEFAULT_ENTITIES.into())
        );
        let w = config.workflow.unwrap();
        assert_eq!(w.data_dir, PathBuf::from(config::DEFAULT_WORKFLOW_DIR));
        assert_eq!(w.tokens, PathBuf::from(config::DEFAULT_TOKENS));
        assert_eq!(
            w.feed_file,
            Some(PathBuf::from(config::DEFAULT_WORKFLOW_DIR).join("grants.json"))
        );
        assert_eq!(w.request_ttl, jiff::SignedDuration::from_hours(24));
    }

    #[test]
    fn named_inputs_run_a_plain_sidecar_unless_a_workflow_is_named() {
        let (config, _) = serve_args(&["--grants", "g.json"]).configs().unwrap();
        assert!(config.workflow.is_none());
        assert_eq!(config.sources.grants, Some("g.json".into()));

        let (config, _) = serve_args(&[
            "--policies",
            "p",
            "--workflow",
            "/var/lib/elevate",
            "--tokens",
            "t.json",
            "--feed-file",
            "off",
            "--request-ttl",
            "90m",
            "--webhook",
            "requested=http://127.0.0.1:9/hook",
        ])
        .configs()
        .unwrap();
        let w = config.workflow.unwrap();
        assert_eq!(w.data_dir, PathBuf::from("/var/lib/elevate"));
        assert_eq!(w.tokens, PathBuf::from("t.json"));
        assert_eq!(w.feed_file, None);
        assert_eq!(w.request_ttl, jiff::SignedDuration::from_mins(90));
        assert_eq!(
            w.webhooks,
            vec!["requested=http://127.0.0.1:9/hook".to_owned()]
        );
        assert_eq!(config.sources.grants, None);
    }

    #[test]
    fn feed_keys_belong_to_their_side_of_the_feed() {
        let s = serve_args(&[
            "--grants-url",
            "http://h/v1/grants",
            "--feed-public-key",
            "a.pub",
            "--feed-public-key",
            "b.pub",
            "--feed-max-skew-ms",
            "5000",
        ])
        .feed_signing_config()
        .unwrap();
        assert_eq!(s.public_keys, vec![PathBuf::from("a.pub"), "b.pub".into()]);
        assert_eq!(s.max_skew, Duration::from_secs(5));
        let none = serve_args(&["--grants", "g.json"])
            .feed_signing_config()
            .unwrap();
        assert_eq!(none, config::FeedSigningConfig::default());
        let s = serve_args(&[
            "--workflow",
            "d",
            "--tokens",
            "t",
            "--feed-signing-key",
            "k",
        ])
        .feed_signing_config()
        .unwrap();
        assert_eq!(s.signing_keys, vec![PathBuf::from("k")]);
        let err = serve_args(&["--grants", "g.json", "--feed-signing-key", "k"])
            .feed_signing_config()
            .unwrap_err();
        assert!(err.to_string().contains("--workflow"), "{err}");
        let err = serve_args(&["--workflow", "d", "--tokens", "t", "--feed-public-key", "a"])
            .feed_signing_config()
            .unwrap_err();
        assert!(err.to_string().contains("--feed-public-key"), "{err}");
        let file = toml_file("grants = \"g.json\"\nfeed-public-key = [\"f.pub\"]\n");
        let path = file.path().to_str().unwrap();
        let s = serve_args(&["--config", path])
            .feed_signing_config()
            .unwrap();
        assert_eq!(s.public_keys, vec![PathBuf::from("f.pub")]);
        let s = serve_args(&["--config", path, "--feed-public-key", "x.pub"])
            .feed_signing_config()
            .unwrap();
        assert_eq!(s.public_keys, vec![PathBuf::from("x.pub")], "flags replace");
    }

    #[test]
    fn a_workflow_refuses_a_second_grant_source_a_missing_token_file_and_a_bad_ttl() {
        let err = |args: &[&str]| serve_args(args).configs().unwrap_err().to_string();
        let e = err(&["--workflow", "d", "--tokens", "t", "--grants", "g.json"]);
        assert!(e.contains("`--grants`"), "{e}");
        let e = err(&[
            "--workflow",
            "d",
            "--tokens",
            "t",
            "--grants-url",
            "https://h/v1/grants",
        ]);
        assert!(e.contains("`--grants-url`"), "{e}");
        let e = err(&["--workflow", "d"]);
        assert!(e.contains("--tokens"), "{e}");
        let e = err(&["--workflow", "d", "--tokens", "t", "--request-ttl", "soon"]);
        assert!(e.contains("`soon`"), "{e}");
        let e = err(&["--workflow", "d", "--tokens", "t", "--request-ttl=-1h"]);
        assert!(e.contains("request-ttl"), "{e}");
    }
}
