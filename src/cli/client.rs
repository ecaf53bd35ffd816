//! A small JSON client for the workflow API: one base URL, one bearer token, GET and
//! POST, and the server's `{"error", "kind"}` answers as a typed [`ClientError`].
//!
//! `http://`, or `https://` verified against the system roots or, with `--ca FILE`
//! (`ELEVATE_CA`), against that CA only (a private CA for the workflow). The token goes into the `Authorization` header and nowhere else: not into errors,
//! not into `Debug` output.

use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::{EXIT_DENY, EXIT_FAILURE, EXIT_INVALID};

/// Where the workflow API listens unless `--url` or `ELEVATE_URL` says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8180";

/// One exchange may take this long, connecting included: the API answers from memory,
/// so anything slower is a server in trouble, not a slow answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A generous bound for a list of every request; beyond it the answer is not ours.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// A bearer token. Its `Debug` prints `***` so the parsed command line can be logged.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Token {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Why a call brought no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A bad `--url` or `--token`, found before sending anything.
    #[error("{0}")]
    Config(String),
    #[error("cannot reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("{url} did not answer within {after:?}")]
    Timeout { url: String, after: Duration },
    /// The server's own error answer; `message` is its sentence.
    #[error("{message}")]
    Api {
        status: StatusCode,
        kind: Option<String>,
        message: String,
    },
    #[error("the answer from {url} is not the expected JSON: {cause}")]
    Malformed { url: String, cause: String },
}

impl ClientError {
    /// The process exit code for this failure: 2 when policy refused, 3 when the
    /// request itself was wrong, 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => EXIT_INVALID,
            Self::Api { status, .. } => match *status {
                StatusCode::FORBIDDEN => EXIT_DENY,
                StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => EXIT_INVALID,
                _ => EXIT_FAILURE,
            },
            Self::Unreachable { .. } | Self::Timeout { .. } | Self::Malformed { .. } => {
                EXIT_FAILURE
            }
        }
    }

    /// Whether asking again later may succeed: the server was down, restarting or
    /// overloaded. A `--wait` rides these out instead of giving up on the request.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Timeout { .. } => true,
            Self::Api { status, .. } => status.is_server_error(),
            Self::Config(_) | Self::Malformed { .. } => false,
        }
    }
}

/// The workflow API at one base URL, as one principal.
pub struct Client {
    /// `scheme://authority` plus any path prefix, without a trailing `/`.
    base: String,
    authorization: HeaderValue,
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Client {
    /// A client for `url` (`http[s]://host[:port][/prefix]`) sending `token`; over
    /// https it trusts only `ca` when given, else the system roots.
    ///
    /// # Errors
    /// The URL is not an absolute `http://` or `https://` URL with a host, the token
    /// cannot be sent in a header, or the CA file is unusable.
    pub fn new(
        url: &str,
        token: &Token,
        ca: Option<&std::path::Path>,
    ) -> Result<Self, ClientError> {
        let base = parse_base(url)?;
        let https = base.starts_with("https://");
        if ca.is_some() && !https {
            return Err(ClientError::Config(format!(
                "`--ca` verifies an https server, and `--url` `{url}` is http://"
            )));
        }
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", token.0)).map_err(|_| {
                ClientError::Config(
                    "the token has characters that cannot be sent in an HTTP header".into(),
                )
            })?;
        authorization.set_sensitive(true);
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let tls = if https {
            crate::tls::client_config(&crate::config::ClientTlsConfig {
                ca: ca.map(std::path::Path::to_path_buf),
                identity: None,
            })
            .map_err(|e| ClientError::Config(e.to_string()))?
        } else {
            // Never used for an `http://` base; the connector only needs one.
            rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| ClientError::Config(format!("tls: {e}")))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .build(connector);
        Ok(Self {
            base,
            authorization,
            http,
        })
    }

    /// `GET path` (with its query), the answer's JSON.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with `body` as JSON, or with an empty body for `None`.
    ///
    /// # Errors
    /// See [`ClientError`].
    pub async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, ClientError> {
        self.call(Method::POST, path, body).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let uri: Uri = url
            .parse()
            .map_err(|_| ClientError::Config(format!("`{url}` is not a valid URL")))?;
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("elevate/", env!("CARGO_PKG_VERSION")))
            .header(AUTHORIZATION, self.authorization.clone());
        let payload = match body {
            Some(value) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(value.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| ClientError::Config(format!("cannot build the request: {e}")))?;
        let exchange = async {
            let response =
                self.http
                    .request(request)
                    .await
                    .map_err(|e| ClientError::Unreachable {
                        url: url.clone(),
                        cause: cause_chain(&e),
                    })?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| ClientError::Malformed {
                    url: url.clone(),
                    cause: e.to_string(),
                })?
                .to_bytes();
            Ok::<_, ClientError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| ClientError::Timeout {
                url: url.clone(),
                after: REQUEST_TIMEOUT,
            })??;
        if !status.is_success() {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Malformed {
            url,
            cause: e.to_string(),
        })
    }
}

/// The server's sentence and kind, or the bare status when the body is not the
/// contract's error object (a proxy in between, say).
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let message = field("error").unwrap_or_else(|| match status.canonical_reason() {
        Some(reason) => format!("the server answered HTTP {} {reason}", status.as_u16()),
        None => format!("the server answered HTTP {}", status.as_u16()),
    });
    ClientError::Api {
        status,
        kind: field("kind"),
        message,
    }
}

/// Checks `url` and returns it without a trailing `/`, ready for `/v1/...` paths.
fn parse_base(url: &str) -> Result<String, ClientError> {
    let bad = |reason: &str| ClientError::Config(format!("`--url` `{url}` {reason}"));
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|_| bad("is not a URL like `http://127.0.0.1:8180`"))?;
    let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("http") => "http",
        Some("https") => "https",
        Some(_) => return Err(bad("is neither http:// nor https://")),
        None => return Err(bad("is not absolute; give it as `http://host:port`")),
    };
    let authority = match uri.authority() {
        Some(a) if !a.host().is_empty() => a,
        _ => return Err(bad("has no host")),
    };
    if authority.as_str().contains('@') {
        return Err(bad("has credentials in it; pass the token with `--token`"));
    }
    if uri.query().is_some() {
        return Err(bad("has a query; give only the server's base URL"));
    }
    let prefix = uri.path().trim_end_matches('/');
    Ok(format!("{scheme}://{authority}{prefix}"))
}

/// Percent-encodes `text` for a path segment or a query value. Everything but
/// RFC 3986's unreserved characters is encoded, so a UID's quotes and any `&`, `=`,
/// `#` or `/` in an id cannot change the URL's structure.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn base_url_keeps_a_prefix_and_drops_the_trailing_slash() {
        assert_eq!(
            parse_base("http://127.0.0.1:8180/").unwrap(),
            "http://127.0.0.1:8180"
        );
        assert_eq!(
            parse_base("http://gw.internal/elevate/").unwrap(),
            "http://gw.internal/elevate"
        );
    }

    #[test]
    fn https_is_kept_and_other_schemes_and_credentials_are_refused_by_name() {
        assert_eq!(
            parse_base("HTTPS://elevate.example/").unwrap(),
            "https://elevate.example"
        );
        let ftp = parse_base("ftp://elevate.example").unwrap_err().to_string();
        assert!(
            ftp.contains("https://") && ftp.contains("`ftp://elevate.example`"),
            "{ftp}"
        );
        let token: Token = "t".parse().unwrap();
        let ca = std::path::Path::new("ca.pem");
        let err = Client::new("http://127.0.0.1:1", &token, Some(ca))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("`--ca`"), "{err}");
        let err = Client::new(
            "https://127.0.0.1:1",
            &token,
            Some(std::path::Path::new("/nonexistent/ca.pem")),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let creds = parse_base("http://u:p@host").unwrap_err().to_string();
        assert!(creds.contains("credentials"), "{creds}");
        assert!(parse_base("127.0.0.1:8180").is_err());
    }

    #[test]
    fn a_uid_is_encoded_so_it_stays_one_query_value() {
        assert_eq!(encode(r#"User::"alice""#), "User%3A%3A%22alice%22");
        assert_eq!(encode("a&b=c d"), "a%26b%3Dc%20d");
        assert_eq!(encode("r-3"), "r-3");
    }

    #[test]
    fn the_token_never_shows_in_debug() {
        let token: Token = "s3cr3t".parse().unwrap();
        assert_eq!(format!("{token:?}"), "***");
    }

    #[test]
    fn status_maps_to_exit_codes() {
        let api = |status| api_error(status, br#"{"error":"no","kind":"x"}"#);
        assert_eq!(api(StatusCode::FORBIDDEN).exit_code(), EXIT_DENY);
        assert_eq!(api(StatusCode::BAD_REQUEST).exit_code(), EXIT_INVALID);
        assert_eq!(
            api(StatusCode::UNPROCESSABLE_ENTITY).exit_code(),
            EXIT_INVALID
        );
        for status in [
            StatusCode::UNAUTHORIZED,
            StatusCode::NOT_FOUND,
            StatusCode::CONFLICT,
            StatusCode::INTERNAL_SERVER_ERROR,
        ] {
            assert_eq!(api(status).exit_code(), EXIT_FAILURE, "{status}");
        }
        let bare = api_error(StatusCode::BAD_GATEWAY, b"<html>");
        assert_eq!(bare.to_string(), "the server answered HTTP 502 Bad Gateway");
    }
}
