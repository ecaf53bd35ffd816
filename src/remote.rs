//! The remote grant feed: one task that follows `GET /v1/grants` with `If-None-Match`
//! and `?wait=SECONDS` long-polls, and hands what it learns to the [`Store`].
//!
//! * 200: the body goes to [`Store::apply_feed`] (the same rebuild as a file feed).
//!   A good document, new or not, refreshes the feed; a bad one keeps the last good
//!   grants, is recorded in `/v1/status` and counted, and does not refresh the feed.
//! * 304 for the ETag of the live document: the feed is refreshed.
//! * Anything else (unreachable, timeout, another status, a body over the limit): the
//!   error is recorded and counted, the feed is not refreshed, and the next attempt
//!   waits an exponential backoff with jitter.
//!
//! The fetcher never touches the request path: decisions read the snapshot's
//! `feed_deadline`, so once nothing has refreshed the feed for `max_feed_age`, grants
//! are suspended by the engine itself, whatever this task is doing (even hung).
//!
//! `http://` or `https://` (rustls, see [`crate::tls`]): with `--feed-ca` only that CA
//! is trusted, and `--feed-client-cert`/`--feed-client-key` are presented for mTLS. The
//! fetcher re-reads those files before each request and rebuilds its client when they
//! changed, so a rotated client certificate is used without a restart; a bad new set
//! keeps the old client and is logged.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::header::{ACCEPT, ETAG, HeaderValue, IF_NONE_MATCH, USER_AGENT};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::RemoteFeedConfig;
use crate::http::Clock;
use crate::snapshot::{FeedApplied, Store};

/// Starts the fetcher; it runs until `cancel`.
///
/// # Errors
/// The feed's TLS files (CA, client certificate and key) cannot be used.
pub fn spawn(
    store: Arc<Store>,
    config: RemoteFeedConfig,
    clock: Clock,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, crate::tls::TlsError> {
    let fetcher = Fetcher::new(store, config, clock)?;
    Ok(tokio::spawn(fetcher.run(cancel)))
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// A client for the feed: TLS as `config.tls` says for `https://`, plain for `http://`.
fn build_client(config: &RemoteFeedConfig) -> Result<HttpClient, crate::tls::TlsError> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(config.timeout_grace));
    connector.set_nodelay(true);
    connector.enforce_http(false);
    let tls = if config.url.is_https() {
        crate::tls::client_config(&config.tls)?
    } else {
        // Never used for an `http://` URL; the connector only needs one.
        rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1)
        .build(https))
}

/// What one request brought.
enum Answer {
    Document {
        etag: Option<HeaderValue>,
        body: Bytes,
    },
    NotModified,
}

/// Why one request brought nothing usable.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("answered HTTP {0}")]
    Status(StatusCode),
    #[error("document is larger than {0} bytes")]
    TooLarge(usize),
    #[error("cannot read the document: {0}")]
    Body(String),
}

struct Fetcher {
    store: Arc<Store>,
    config: RemoteFeedConfig,
    clock: Clock,
    client: HttpClient,
    /// The digest of the TLS files `client` was built from (`https://` only).
    tls_digest: Option<[u8; 32]>,
    /// The URL without `wait`: the first request, after an answer without ETag, and
    /// after a failure.
    plain: Uri,
    /// The URL with `?wait=N`, sent with `If-None-Match`.
    poll: Uri,
    long_poll: u64,
    /// The ETag of the document behind the live grants: a 304 for it refreshes.
    live_etag: Option<HeaderValue>,
    /// The ETag of the last document received, good or bad, sent as `If-None-Match`
    /// so a bad document is not fetched again and again.
    sent_etag: Option<HeaderValue>,
    /// Consecutive failures, to log the first of a run and the recovery only. After
    /// a failure the next request does not ask for a long-poll: a server that is back
    /// confirms the live document at once instead of holding the request.
    failures: u32,
}

impl Fetcher {
    fn new(
        store: Arc<Store>,
        config: RemoteFeedConfig,
        clock: Clock,
    ) -> Result<Self, crate::tls::TlsError> {
        let long_poll = config.long_poll();
        let tls_digest = if config.url.is_https() {
            Some(crate::tls::client_files_digest(&config.tls)?)
        } else {
            None
        };
        let client = build_client(&config)?;
        let plain = config.url.uri().clone();
        let poll = if long_poll > 0 {
            with_wait(&plain, long_poll)
        } else {
            plain.clone()
        };
        Ok(Self {
            store,
            config,
            clock,
            client,
            tls_digest,
            plain,
            poll,
            long_poll,
            live_etag: None,
            sent_etag: None,
            failures: 0,
        })
    }

    /// Rebuilds the client when its TLS files changed on disk; a set that cannot be
    /// used keeps the current client.
    fn refresh_tls(&mut self) {
        let Some(current) = self.tls_digest else {
            return;
        };
        let rebuilt = crate::tls::client_files_digest(&self.config.tls).and_then(|digest| {
            if digest == current {
                return Ok(None);
            }
            build_client(&self.config).map(|client| Some((client, digest)))
        });
        match rebuilt {
            Ok(None) => {}
            Ok(Some((client, digest))) => {
                self.client = client;
                self.tls_digest = Some(digest);
                tracing::info!(url = %self.config.url, "grant feed tls files changed; new connections use them");
            }
            Err(err) => {
                // Logged once per change: the digest of the bad set is remembered.
                if let Ok(digest) = crate::tls::client_files_digest(&self.config.tls) {
                    self.tls_digest = Some(digest);
                }
                tracing::error!(error = %err, "grant feed tls files unusable; keeping the previous ones");
            }
        }
    }

    async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max);
        tracing::info!(
            url = %self.config.url,
            max_feed_age = ?self.config.max_age,
            long_poll_s = self.long_poll,
            "following the remote grant feed"
        );
        loop {
            self.refresh_tls();
            let started = Instant::now();
            let conditional = self.sent_etag.is_some();
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                result = self.fetch() => result,
            };
            let pause = match result {
                Ok(Answer::Document { etag, body }) => {
                    let store = Arc::clone(&self.store);
                    let now = (self.clock)();
                    let applied = tokio::task::spawn_blocking(move || {
                        store.on_reloader(move |store| store.apply_feed(&body, now))
                    })
                    .await;
                    let applied = applied.ok().flatten().unwrap_or(FeedApplied::Rejected);
                    self.sent_etag = etag.clone();
                    match applied {
                        FeedApplied::Changed { generation } => {
                            self.live_etag = etag;
                            self.recovered();
                            backoff.reset();
                            tracing::debug!(generation, "grant feed applied");
                            // A change answering `If-None-Match` is a real change: ask
                            // for the next one at once. Otherwise (the first request, a
                            // server without ETags) pace, so a server that sends a fresh
                            // body every time is not polled in a tight loop.
                            if conditional {
                                Duration::ZERO
                            } else {
                                self.pace(started)
                            }
                        }
                        FeedApplied::Unchanged => {
                            self.live_etag = etag;
                            self.recovered();
                            backoff.reset();
                            self.pace(started)
                        }
                        // The store has logged, counted and recorded why.
                        FeedApplied::Rejected => backoff.next(),
                    }
                }
                Ok(Answer::NotModified) => {
                    if self.live_etag.is_some() && self.sent_etag == self.live_etag {
                        let store = Arc::clone(&self.store);
                        let now = (self.clock)();
                        let _ =
                            tokio::task::spawn_blocking(move || store.feed_refreshed(now)).await;
                        self.recovered();
                        backoff.reset();
                    }
                    // A 304 for a rejected document says the feed is still bad.
                    self.pace(started)
                }
                Err(err) => {
                    self.failed(&err).await;
                    backoff.next()
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    /// One request, with its whole-exchange timeout.
    async fn fetch(&self) -> Result<Answer, FetchError> {
        let (uri, long_poll) = match &self.sent_etag {
            Some(_) if self.failures == 0 => (self.poll.clone(), self.long_poll),
            _ => (self.plain.clone(), 0),
        };
        let mut request = Request::get(uri)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("elevate/", env!("CARGO_PKG_VERSION")));
        if let Some(etag) = &self.sent_etag {
            request = request.header(IF_NONE_MATCH, etag.clone());
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        let timeout = self.config.timeout(long_poll);
        let max = self.config.max_bytes;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| FetchError::Transport(cause_chain(&e)))?;
            let status = response.status();
            if status == StatusCode::NOT_MODIFIED {
                return Ok(Answer::NotModified);
            }
            if status != StatusCode::OK {
                return Err(FetchError::Status(status));
            }
            let etag = response.headers().get(ETAG).cloned();
            let body = Limited::new(response.into_body(), max)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge(max)
                    } else {
                        FetchError::Body(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Answer::Document { etag, body })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(FetchError::Timeout(timeout)))
    }

    /// Waits out the rest of `min_interval` after an answer that brought nothing new,
    /// so a server that ignores `wait` is polled, not hammered.
    fn pace(&self, started: Instant) -> Duration {
        self.config.min_interval().saturating_sub(started.elapsed())
    }

    async fn failed(&mut self, err: &FetchError) {
        let message = format!("GET {}: {err}", self.config.url);
        self.failures = self.failures.saturating_add(1);
        if self.failures == 1 {
            tracing::warn!(
                error = %message,
                "grant feed fetch failed; keeping the last good grants until the feed is too old"
            );
        } else {
            tracing::debug!(error = %message, failures = self.failures, "grant feed fetch failed again");
        }
        let store = Arc::clone(&self.store);
        let now = (self.clock)();
        let _ = tokio::task::spawn_blocking(move || store.feed_failed(&message, now)).await;
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                url = %self.config.url,
                failures = self.failures,
                "grant feed answers again"
            );
        }
        self.failures = 0;
    }
}

/// `uri` with `wait=N` added to its query.
fn with_wait(uri: &Uri, wait: u64) -> Uri {
    let path = uri.path();
    let path_and_query = match uri.query() {
        Some(q) if !q.is_empty() => format!("{path}?{q}&wait={wait}"),
        _ => format!("{path}?wait={wait}"),
    };
    let mut parts = uri.clone().into_parts();
    // A path and query built from a valid URI's own parts is valid.
    parts.path_and_query = path_and_query.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// An error and its sources, `: `-separated (hyper's own `Display` is terse).
fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Exponential backoff with "equal jitter": the n-th delay is uniform in
/// `[d/2, d]` with `d = min(first * 2^n, last)`, so retries spread out but never
/// come sooner than half the nominal delay.
#[derive(Debug)]
struct Backoff {
    first: Duration,
    last: Duration,
    current: Duration,
}

impl Backoff {
    fn new(first: Duration, last: Duration) -> Self {
        let last = last.max(first);
        Self {
            first,
            last,
            current: first,
        }
    }

    fn reset(&mut self) {
        self.current = self.first;
    }

    fn next(&mut self) -> Duration {
        let nominal = self.current;
        self.current = self.current.saturating_mul(2).min(self.last);
        let half = nominal / 2;
        half + half.mul_f64(random_unit())
    }
}

/// A number in `[0, 1)`, random enough for jitter (std's per-process hash keys).
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::hash::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    // 53 random bits → the mantissa of an f64 in [0, 1).
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backoff_doubles_to_its_bound_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut nominal = Duration::from_millis(100);
        for _ in 0..12 {
            let d = b.next();
            assert!(
                d >= nominal / 2 && d <= nominal,
                "{d:?} outside [{nominal:?}/2, {nominal:?}]"
            );
            nominal = (nominal * 2).min(Duration::from_secs(10));
        }
        assert_eq!(b.current, Duration::from_secs(10));
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }

    #[test]
    fn wait_is_added_to_the_query() {
        let uri: Uri = "http://127.0.0.1:8180/v1/grants".parse().unwrap();
        assert_eq!(
            with_wait(&uri, 25).to_string(),
            "http://127.0.0.1:8180/v1/grants?wait=25"
        );
        let uri: Uri = "http://feed/v1/grants?tenant=a".parse().unwrap();
        assert_eq!(
            with_wait(&uri, 5).to_string(),
            "http://feed/v1/grants?tenant=a&wait=5"
        );
    }
}
