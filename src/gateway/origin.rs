//! The original request as a gateway forwards it to `/v1/forward-auth`: its method
//! and URI from the gateway's headers, its path split into decoded segments (or
//! refused when it could mean two things), and the client's IP address.
//!
//! Two header conventions exist: nginx's `auth_request` is configured to send
//! `X-Original-Method`/`X-Original-URI`, Caddy's `forward_auth` and Traefik's
//! ForwardAuth send `X-Forwarded-Method`/`X-Forwarded-Uri`. A gateway sets its own
//! pair and passes the other one through from the client untouched, so a request
//! that carries both pairs with different values is refused: trusting either one
//! would let a client choose what gets authorized.

use std::net::{IpAddr, SocketAddr};

use hyper::HeaderMap;

/// The method and URI of the request being authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// Upper case, as sent.
    pub method: String,
    /// The path as sent (still percent-encoded), without the query.
    pub path: String,
    /// Everything after the first `?`, as sent; empty without one.
    pub query: String,
}

/// Why the original request cannot be read from the gateway's headers. Each is a
/// gateway misconfiguration or a forged request, never something a user fixes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error(
        "no original request: the gateway must send `X-Original-Method` and `X-Original-URI` \
         (nginx) or `X-Forwarded-Method` and `X-Forwarded-Uri` (Caddy, Traefik)"
    )]
    Missing,
    #[error("`{0}` is missing; the gateway must send the original method and URI together")]
    Half(&'static str),
    #[error("`{0}` is not visible ASCII text")]
    NotText(&'static str),
    #[error("`{header}` `{value}` is not an HTTP method")]
    Method { header: &'static str, value: String },
    #[error("`{header}` `{value}` is not an origin-form URI like `/api/x?y=1`")]
    Uri { header: &'static str, value: String },
    #[error(
        "`{ours}` and `{theirs}` disagree; one of them was sent by the client (strip the \
         other convention's headers at the gateway)"
    )]
    Conflict {
        ours: &'static str,
        theirs: &'static str,
    },
}

const NGINX: (&str, &str) = ("x-original-method", "x-original-uri");
const FORWARDED: (&str, &str) = ("x-forwarded-method", "x-forwarded-uri");

/// Reads the original method and URI from either header convention.
///
/// # Errors
/// Neither pair (or only half of one) is present, a value is malformed, or both
/// pairs are present and disagree.
pub fn parse_original(headers: &HeaderMap) -> Result<Original, OriginError> {
    let nginx = pair(headers, NGINX)?;
    let forwarded = pair(headers, FORWARDED)?;
    let (method, uri) = match (nginx, forwarded) {
        (Some(a), Some(b)) => {
            if a.0 != b.0 {
                return Err(OriginError::Conflict {
                    ours: "X-Original-Method",
                    theirs: "X-Forwarded-Method",
                });
            }
            if a.1 != b.1 {
                return Err(OriginError::Conflict {
                    ours: "X-Original-URI",
                    theirs: "X-Forwarded-Uri",
                });
            }
            a
        }
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => return Err(OriginError::Missing),
    };
    let header = if headers.contains_key(NGINX.0) {
        "X-Original-Method"
    } else {
        "X-Forwarded-Method"
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
        return Err(OriginError::Method {
            header,
            value: method,
        });
    }
    let uri_header = if headers.contains_key(NGINX.1) {
        "X-Original-URI"
    } else {
        "X-Forwarded-Uri"
    };
    if !uri.starts_with('/') || uri.bytes().any(|b| b == b'#') {
        return Err(OriginError::Uri {
            header: uri_header,
            value: uri,
        });
    }
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (uri, String::new()),
    };
    Ok(Original {
        method: method.to_ascii_uppercase(),
        path,
        query,
    })
}

fn pair(
    headers: &HeaderMap,
    (method, uri): (&'static str, &'static str),
) -> Result<Option<(String, String)>, OriginError> {
    let text = |name: &'static str| -> Result<Option<String>, OriginError> {
        // A repeated header is two claims; only one value can be the gateway's.
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(OriginError::Conflict {
                ours: name,
                theirs: name,
            });
        }
        let text = value.to_str().map_err(|_| OriginError::NotText(name))?;
        Ok((!text.is_empty()).then(|| text.to_owned()))
    };
    match (text(method)?, text(uri)?) {
        (Some(m), Some(u)) => Ok(Some((m, u))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(OriginError::Half(uri)),
        (None, Some(_)) => Err(OriginError::Half(method)),
    }
}

/// Why a path is refused: it could mean one thing to elevate and another upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("has an empty segment (`//`)")]
    EmptySegment,
    #[error("has a `.` or `..` segment")]
    DotSegment,
    #[error("has an encoded `/` or a `\\` in a segment")]
    Separator,
    #[error("has a malformed percent escape or is not UTF-8")]
    Encoding,
    #[error("has a control character")]
    Control,
    #[error("has a `;` in a segment (path parameters, which some servers strip)")]
    Semicolon,
}

/// Splits an origin-form path into percent-decoded segments; a trailing `/` is
/// ignored. Refuses what upstream servers disagree about: empty, `.` and `..`
/// segments (raw or encoded), encoded slashes and backslashes, `;` (Tomcat, Jetty
/// and Spring cut `;params` off a segment, so `/p/checkout;x` would name a resource
/// elevate never saw), and control bytes.
///
/// # Errors
/// See [`PathError`].
pub fn parse_path(path: &str) -> Result<Vec<String>, PathError> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|raw| {
            if raw.is_empty() {
                return Err(PathError::EmptySegment);
            }
            let decoded = percent_decode(raw).ok_or(PathError::Encoding)?;
            if decoded == "." || decoded == ".." {
                return Err(PathError::DotSegment);
            }
            if decoded.contains(['/', '\\']) {
                return Err(PathError::Separator);
            }
            if decoded.chars().any(char::is_control) {
                return Err(PathError::Control);
            }
            if decoded.contains(';') {
                return Err(PathError::Semicolon);
            }
            Ok(decoded)
        })
        .collect()
}

/// Decodes `%XX` escapes (never `+`, which means itself in a path); `None` for a
/// malformed escape or a result that is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16))?;
            let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16))?;
            out.push(u8::try_from(hi * 16 + lo).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Why the client IP cannot be taken from the configured header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientIpError {
    #[error(
        "`{0}` is missing; the gateway must set it on every request (or drop `--client-ip-header`)"
    )]
    Missing(String),
    #[error("`{header}` `{value}` does not end with an IP address")]
    Invalid { header: String, value: String },
}

/// The client's address: from `header` when one is configured (its last
/// comma-separated entry, which is the one the gateway next to elevate added),
/// else the peer of this connection.
///
/// # Errors
/// A configured header is missing or its last entry is not an IP address: the
/// gateway is not setting it, so nothing it says about the client can be used.
pub fn client_ip(
    headers: &HeaderMap,
    header: Option<&hyper::header::HeaderName>,
    peer: Option<SocketAddr>,
) -> Result<Option<IpAddr>, ClientIpError> {
    let Some(header) = header else {
        return Ok(peer.map(|p| p.ip()));
    };
    let joined = crate::gateway::table::header_value(headers.get_all(header))
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ClientIpError::Missing(header.to_string()))?;
    let last = joined.rsplit(',').next().unwrap_or_default().trim();
    parse_ip(last)
        .map(Some)
        .ok_or_else(|| ClientIpError::Invalid {
            header: header.to_string(),
            value: joined.clone(),
        })
}

/// An address as gateways write it: `1.2.3.4`, `::1`, `[::1]`, `1.2.3.4:5678` or
/// `[::1]:5678` (the port is dropped).
fn parse_ip(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse::<IpAddr>().ok())
}
