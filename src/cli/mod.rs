//! The command line: clap types and one file per subcommand. Subcommands call library
//! functions; results go to stdout, diagnostics to stderr.
//!
//! Exit codes: 0 allow / valid / ok, 2 deny, 3 invalid input, 1 any other failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{self, ConfigError, FeedUrl, FileConfig, Sources, Validation};

mod audit;
mod authorize;
mod client;
mod elevation;
mod fmt;
mod keygen;
mod prove;
mod replay;
pub mod serve;
mod test;
mod token;
mod validate;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_DENY: u8 = 2;
pub const EXIT_INVALID: u8 = 3;

/// Just-in-time permission elevation: a Cedar decision sidecar with time-boxed grants.
#[derive(Debug, Parser)]
#[command(
    name = "elevate",
    version,
    after_help = "Exit codes: 0 allow/valid, 2 deny, 3 invalid input, 1 other failure."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the decision sidecar (HTTP API on loopback by default).
    Serve(Box<serve::ServeArgs>),
    /// Check everything `serve` would load; exit 0 if valid, 3 if not.
    Validate(validate::ValidateArgs),
    /// Decide one request; exit 0 for Allow, 2 for Deny, 3 for invalid input.
    Authorize(authorize::AuthorizeArgs),
    /// Audit trail tools: `verify` checks a workflow event log's hash chain.
    Audit(audit::AuditArgs),
    /// Ask for an elevation grant; with `--wait`, block until it is in force.
    Request(elevation::RequestArgs),
    /// Approve a pending request; the grant starts once the role's quorum is met.
    Approve(elevation::DecideArgs),
    /// Deny a pending request.
    Deny(elevation::DecideArgs),
    /// Revoke an approved request's grant now; the policies say who may.
    Revoke(elevation::DecideArgs),
    /// Withdraw your own pending request.
    Cancel(elevation::DecideArgs),
    /// Give back your own grant before it expires.
    Relinquish(elevation::DecideArgs),
    /// Ask for more time on an approved grant: a new request that starts where it ends.
    Extend(elevation::ExtendArgs),
    /// List elevation requests, oldest first, optionally by state or principal.
    List(elevation::ListArgs),
    /// Show one request (by `r-N` or its grant's `g-N`) in full.
    Show(elevation::ShowArgs),
    /// List the grants: approved requests with their windows.
    Grants(elevation::GrantsArgs),
    /// Bearer tokens for the workflow API: `new` makes one, `hash` prints a token's SHA-256.
    Token(token::TokenArgs),
    /// Make an Ed25519 key pair for signing the grant feed (DIR/NAME.key, DIR/NAME.pub); prints the key id.
    Keygen(keygen::KeygenArgs),
    /// Run the policy tests (`policies/tests/*.toml`); exit 0 all pass, 2 a case failed, 3 invalid tests or inputs.
    Test(test::TestArgs),
    /// Format policy files with Cedar's formatter; `--check` lists files that would change and exits 2.
    Fmt(fmt::FmtArgs),
    /// Prove properties of the policies (`policies/properties.toml`) with SymCC and cvc5; exit 0 all hold, 2 one fails, 3 invalid, 1 no solver.
    Prove(prove::ProveArgs),
    /// Decide a decision log's requests again against candidate policies; exit 0 if none would change, 2 if some would, 3 for bad input.
    Replay(replay::ReplayArgs),
}

/// The inputs every subcommand loads. With none given at all (flags, environment or
/// config file), the shipped defaults are used, relative to the working directory;
/// once any input is named, only the named inputs are loaded.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// TOML file with the same settings as the flags; flags win.
    #[arg(long, env = "ELEVATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// A `.cedar` file or a directory of them [default: policies]
    #[arg(long, env = "ELEVATE_POLICIES")]
    pub policies: Option<PathBuf>,
    /// Schema: `.cedarschema`, or Cedar's JSON schema (`.json`) [default: schema/elevate.cedarschema]
    #[arg(long, env = "ELEVATE_SCHEMA")]
    pub schema: Option<PathBuf>,
    /// Cedar entities JSON [default: deploy/local/entities.json]
    #[arg(long, env = "ELEVATE_ENTITIES")]
    pub entities: Option<PathBuf>,
    /// Grant feed JSON file, or an `http[s]://` URL as `--grants-url` [default: deploy/local/grants.json]
    #[arg(long, env = "ELEVATE_GRANTS")]
    pub grants: Option<PathBuf>,
    /// Grant feed over HTTP(S), long-polled (`https://HOST:PORT/v1/grants`, or `http://` on
    /// loopback); instead of `--grants`
    #[arg(long, env = "ELEVATE_GRANTS_URL")]
    pub grants_url: Option<String>,
    /// `strict`: policies and entities must validate; `warn`: log and serve anyway [default: strict]
    #[arg(long, env = "ELEVATE_VALIDATION", value_enum)]
    pub validation: Option<Validation>,
}

impl InputArgs {
    /// The config file, if one was named.
    ///
    /// # Errors
    /// It cannot be read or parsed.
    pub fn file_config(&self) -> Result<FileConfig, config::ConfigError> {
        match &self.config {
            Some(path) => FileConfig::load(path),
            None => Ok(FileConfig::default()),
        }
    }

    /// Merges flags over the config file over the shipped defaults. A grant feed URL
    /// names the grants input too, so with one there is no feed file.
    pub fn sources(&self, file: &FileConfig) -> Sources {
        let policies = self.policies.clone().or_else(|| file.policies.clone());
        let schema = self.schema.clone().or_else(|| file.schema.clone());
        let entities = self.entities.clone().or_else(|| file.entities.clone());
        let feed = self.grant_feed(file).unwrap_or_else(|_| {
            // Both named in one place: `grants_url` reports it; here the file wins.
            GrantFeed::File(self.grants.clone().or_else(|| file.grants.clone()))
        });
        let (grants, grants_url_named) = match feed {
            GrantFeed::File(path) => (path, false),
            GrantFeed::Url(_) => (None, true),
        };
        let validation = self.validation.or(file.validation).unwrap_or_default();
        let none_named = policies.is_none()
            && schema.is_none()
            && entities.is_none()
            && grants.is_none()
            && !grants_url_named;
        if none_named {
            return Sources {
                policies: PathBuf::from(config::DEFAULT_POLICIES),
                schema: Some(PathBuf::from(config::DEFAULT_SCHEMA)),
                entities: Some(PathBuf::from(config::DEFAULT_ENTITIES)),
                grants: Some(PathBuf::from(config::DEFAULT_GRANTS)),
                validation,
            };
        }
        Sources {
            policies: policies.unwrap_or_else(|| PathBuf::from(config::DEFAULT_POLICIES)),
            schema,
            entities,
            grants,
            validation,
        }
    }
}

/// Where the grant feed comes from once flags are layered over the config file.
enum GrantFeed {
    File(Option<PathBuf>),
    Url(String),
}

impl InputArgs {
    /// The grant feed URL, if the grants come over HTTP. Flags (and their environment
    /// variables) decide over the config file; naming both a file and a URL in the same
    /// place is an error.
    ///
    /// # Errors
    /// Both are named in one place, or the URL is not a usable `http://` URL.
    pub fn grants_url(&self, file: &FileConfig) -> Result<Option<FeedUrl>, ConfigError> {
        match self.grant_feed(file)? {
            GrantFeed::Url(url) => FeedUrl::parse(&url).map(Some),
            GrantFeed::File(_) => Ok(None),
        }
    }

    fn grant_feed(&self, file: &FileConfig) -> Result<GrantFeed, ConfigError> {
        // `--grants http://...` names a URL too, as people write it.
        let as_url = |path: &Option<PathBuf>| {
            path.as_ref()
                .and_then(|p| p.to_str())
                .filter(|p| p.starts_with("http://") || p.starts_with("https://"))
                .map(str::to_owned)
        };
        let layer = |path: &Option<PathBuf>, url: &Option<String>, place| match (path, url) {
            (Some(_), Some(_)) => Err(ConfigError::TwoFeeds { place }),
            (Some(_), None) if as_url(path).is_some() => Ok(as_url(path).map(GrantFeed::Url)),
            (Some(path), None) => Ok(Some(GrantFeed::File(Some(path.clone())))),
            (None, Some(url)) => Ok(Some(GrantFeed::Url(url.clone()))),
            (None, None) => Ok(None),
        };
        let flags = layer(&self.grants, &self.grants_url, "the flags and environment")?;
        let file = layer(&file.grants, &file.grants_url, "the config file")?;
        Ok(flags.or(file).unwrap_or(GrantFeed::File(None)))
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Validate(args) => validate::run(&args),
        Command::Authorize(args) => authorize::run(&args),
        Command::Audit(args) => audit::run(&args),
        Command::Request(args) => elevation::request(&args),
        Command::Approve(args) => elevation::decide(elevation::Decision::Approve, &args),
        Command::Deny(args) => elevation::decide(elevation::Decision::Deny, &args),
        Command::Revoke(args) => elevation::decide(elevation::Decision::Revoke, &args),
        Command::Cancel(args) => elevation::decide(elevation::Decision::Cancel, &args),
        Command::Relinquish(args) => elevation::decide(elevation::Decision::Relinquish, &args),
        Command::Extend(args) => elevation::extend(&args),
        Command::List(args) => elevation::list(&args),
        Command::Show(args) => elevation::show(&args),
        Command::Grants(args) => elevation::grants(&args),
        Command::Token(args) => token::run(&args),
        Command::Keygen(args) => keygen::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Fmt(args) => fmt::run(&args),
        Command::Prove(args) => prove::run(&args),
        Command::Replay(args) => replay::run(&args),
    };
    ExitCode::from(code)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}
