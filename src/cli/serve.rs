//! `elevate serve`: load, bind, watch, serve until SIGTERM/SIGINT, drain, flush.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{EXIT_FAILURE, EXIT_INVALID, EXIT_OK, InputArgs};
use crate::audit::DecisionLog;
use crate::config::{self, Config, ConfigError, HttpConfig, ReloadConfig};
use crate::http::{self, App};
use crate::metrics::Metrics;
use crate::snapshot::{self, Store};

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
    /// Largest request body accepted, in bytes [default: 1048576]
    #[arg(long, env = "ELEVATE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most connections served at once [default: 4096]
    #[arg(long, env = "ELEVATE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Time a client has to send request headers, in ms [default: 10000]
    #[arg(long, env = "ELEVATE_HEADER_TIMEOUT_MS")]
    pub header_timeout_ms: Option<u64>,
    /// A connection that moves no byte this long is closed, in ms [default: 120000]
    #[arg(long, env = "ELEVATE_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Quiet time after a file event before reloading, in ms [default: 250]
    #[arg(long, env = "ELEVATE_DEBOUNCE_MS")]
    pub debounce_ms: Option<u64>,
    /// Rescan interval, in case file events are lost, in ms [default: 30000]
    #[arg(long, env = "ELEVATE_RESCAN_MS")]
    pub rescan_ms: Option<u64>,
    /// Decision records queued before ordinary ones are dropped [default: 65536]
    #[arg(long, env = "ELEVATE_DECISION_QUEUE")]
    pub decision_queue: Option<usize>,
    /// Time to drain in-flight requests on shutdown, in ms [default: 10000]
    #[arg(long, env = "ELEVATE_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
}

impl ServeArgs {
    /// Flags over the config file over defaults.
    ///
    /// # Errors
    /// The config file or a value is unusable.
    pub fn config(&self) -> Result<Config, ConfigError> {
        let file = self.inputs.file_config()?;
        let sources = self.inputs.sources(&file);
        let listen = self.listen.clone().or_else(|| file.listen.clone());
        let listen = config::parse_listen(listen.as_deref().unwrap_or(config::DEFAULT_LISTEN))?;
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
        Ok(Config {
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
            },
            http: HttpConfig {
                listen,
                max_body: self
                    .max_body_bytes
                    .or(file.max_body_bytes)
                    .unwrap_or(config::DEFAULT_MAX_BODY),
                header_timeout: ms(
                    "header-timeout-ms",
                    self.header_timeout_ms,
                    file.header_timeout_ms,
                    config::DEFAULT_HEADER_TIMEOUT,
                )?,
                idle_timeout: ms(
                    "idle-timeout-ms",
                    self.idle_timeout_ms,
                    file.idle_timeout_ms,
                    config::DEFAULT_IDLE_TIMEOUT,
                )?,
                max_connections: self
                    .max_connections
                    .or(file.max_connections)
                    .unwrap_or(config::DEFAULT_MAX_CONNECTIONS),
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
        })
    }
}

pub fn run(args: ServeArgs) -> u8 {
    let config = match args.config() {
        Ok(c) => c,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return EXIT_FAILURE;
        }
    };
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> u8 {
    let listener = match tokio::net::TcpListener::bind(config.http.listen).await {
        Ok(l) => l,
        Err(err) => {
            eprintln!("error: cannot listen on {}: {err}", config.http.listen);
            return EXIT_FAILURE;
        }
    };
    let cancel = CancellationToken::new();
    crate::shutdown::cancel_on_signal(cancel.clone());
    let running = match start(
        config,
        listener,
        http::system_clock(),
        prometheus::Registry::new(),
        cancel,
    ) {
        Ok(r) => r,
        Err(StartError::Load(err)) => {
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
}

/// A started server: its address, its store, and the task that ends after shutdown.
pub struct Running {
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
    let metrics = Arc::new(Metrics::new(registry)?);
    let store = Arc::new(Store::load(
        config.sources.clone(),
        Arc::clone(&metrics),
        clock(),
    )?);
    let (log, writer) = DecisionLog::spawn(
        &config.decision_log,
        config.decision_queue,
        Arc::clone(&metrics),
    )
    .map_err(StartError::DecisionLog)?;
    let reloader =
        snapshot::spawn_reloader(Arc::clone(&store), config.reload.clone(), cancel.clone())?;
    let addr = listener.local_addr().map_err(StartError::DecisionLog)?;
    let snap = store.current();
    tracing::info!(
        listen = %addr,
        generation = snap.generation,
        policies = snap.bundle.statics.policies().count(),
        roles = snap.bundle.roles.len(),
        entities = snap.store.entities.len(),
        grants = snap.grants.len(),
        "elevate serving"
    );
    drop(snap);
    let app = Arc::new(App {
        store: Arc::clone(&store),
        metrics,
        log,
        config: config.http.clone(),
        clock,
    });
    let token = cancel.clone();
    let task = tokio::spawn(async move {
        let result = http::serve(listener, app, token.clone(), config.shutdown_grace).await;
        token.cancel();
        let _ = reloader.await;
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
