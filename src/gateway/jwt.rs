//! Bearer JWT principals for the gateway endpoints: the key set (`--jwt-keys`, a JWK
//! set or PEM public keys, hot-reloaded), reading `Authorization: Bearer` from the
//! original request, verifying the token and turning one of its claims into the
//! principal.
//!
//! With a key set configured the principal comes only from the token: the principal
//! header is not read at all, so a client that gets a header past the gateway still
//! cannot choose who it is.
//!
//! What a token must be to name a principal, checked in this order:
//! * one `Authorization: Bearer` header, a compact JWS of at most
//!   [`MAX_TOKEN_BYTES`];
//! * its `alg` is the algorithm of a key in the set. Each key has exactly one
//!   algorithm, from its JWK `alg` or else from its type and curve (RSA → RS256,
//!   P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA); `none` and HMAC never are,
//!   because a set that holds a secret (`oct`) or a private key is refused whole,
//!   so a public key can never be used as an HMAC secret (algorithm confusion);
//! * its `kid` names a key of the set; keys without a `kid` (PEM keys) are tried
//!   for any token of their algorithm;
//! * the signature verifies (the `jsonwebtoken` crate does the cryptography);
//! * `iss` equals the configured issuer, `aud` is or contains the configured
//!   audience, `exp` is present and `now < exp + leeway`, and `now >= nbf - leeway`
//!   when `nbf` is present;
//! * the principal claim is a non-empty string: a UID (`ApiKey::"bb-ws1"`) or a bare
//!   id of the principal type, as in the header.
//!
//! Claims are read only after the signature verifies, so an error message may show
//! a claim's value; no message or log line ever holds the token.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cedar_policy::{EntityTypeName, EntityUid};
use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;
use jiff::Timestamp;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use prometheus::{IntCounterVec, Opts};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::principal;
use crate::metrics::Metrics;

/// The claim that names the principal, unless configured.
pub const DEFAULT_PRINCIPAL_CLAIM: &str = "sub";
/// Clock skew tolerated on `exp` and `nbf`. NTP keeps hosts well within a second of
/// each other; 30 s still covers a badly synced VM while letting an expired token
/// live at most that long (half of `jsonwebtoken`'s default of 60 s).
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The longest bearer token read. Identity providers' tokens are a few KiB; the bound
/// keeps a client from making elevate base64-decode and hash megabytes per request.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// RSA keys shorter than this (in bits) are refused, as NIST has since 2015.
pub const MIN_RSA_BITS: usize = 2048;

/// How bearer tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The key set file: a JWK set (JSON) or PEM public keys, hot-reloaded.
    pub keys: PathBuf,
    /// The one accepted `iss`.
    pub issuer: String,
    /// The audience a token's `aud` must be or contain: this service.
    pub audience: String,
    /// The claim whose string value is the principal.
    pub principal_claim: String,
    pub leeway: Duration,
}

/// A key set file that cannot be used; the whole file is refused, never one key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeySetError {
    #[error("cannot read it: {0}")]
    Read(String),
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("neither a JWK set (`{{\"keys\": [...]}}`) nor PEM public keys")]
    Format,
    #[error("not a JWK set: {0}")]
    Json(String),
    #[error("{key} is a symmetric (`oct`) key; only public keys are accepted, never HMAC secrets")]
    Symmetric { key: String },
    #[error("{key} holds private key material; give elevate only the public keys")]
    Private { key: String },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("{key} is a {bits}-bit RSA key; at least {MIN_RSA_BITS} bits are required")]
    WeakRsa { key: String, bits: usize },
    #[error("key id `{0}` is used by more than one key")]
    DuplicateKid(String),
    #[error("no signature key in it (keys for encryption and unknown key types are ignored)")]
    Empty,
}

/// Why a request has no principal: the answer is 401. Each names what is wrong
/// with the token, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no principal: send `Authorization: Bearer <token>` with a JWT from `{issuer}`")]
    Missing { issuer: String },
    #[error("`Authorization` is sent more than once")]
    Repeated,
    #[error("`Authorization` is not a bearer token (`Authorization: Bearer <token>`)")]
    NotBearer,
    #[error("the bearer token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("the bearer token is not a signed JWT: {0}")]
    Malformed(String),
    #[error("the token's algorithm `{alg}` is not accepted; the key set has {allowed}")]
    Algorithm { alg: String, allowed: String },
    #[error("the token's key id `{0}` is not in the key set")]
    UnknownKid(String),
    #[error("no key in the key set verifies `{alg}` tokens with key id `{kid}`")]
    NoKey { alg: String, kid: String },
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has no `exp` (expiry); tokens that never expire are refused")]
    NoExpiry,
    #[error("the token expired at {0}")]
    Expired(Timestamp),
    #[error("the token is not valid before {0}")]
    NotYetValid(Timestamp),
    #[error("the token's `{0}` is not a NumericDate (seconds since the epoch)")]
    BadTime(&'static str),
    #[error("the token's issuer {found} is not `{expected}`")]
    Issuer { found: String, expected: String },
    #[error("the token's audience {found} does not include `{expected}`")]
    Audience { found: String, expected: String },
    #[error("the token has no string claim `{0}` to take the principal from")]
    NoPrincipal(String),
    #[error(
        "the token's `{claim}` `{value}` is neither an entity UID like `User::\"alice\"` nor a bare id"
    )]
    Principal { claim: String, value: String },
}

impl TokenError {
    /// Whether a token was sent at all: RFC 6750 asks for `error="invalid_token"`
    /// then, and for no error code when the request had no credentials.
    pub fn had_token(&self) -> bool {
        !matches!(self, Self::Missing { .. })
    }

    /// Every [`TokenError::reason`], for the metric's series.
    pub const REASONS: [&'static str; 10] = [
        "missing",
        "malformed",
        "algorithm",
        "unknown_key",
        "signature",
        "expired",
        "not_yet_valid",
        "issuer",
        "audience",
        "principal",
    ];

    /// A closed label for logs and `elevate_jwt_rejected_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "missing",
            Self::Repeated | Self::NotBearer | Self::TooLong | Self::Malformed(_) => "malformed",
            Self::Algorithm { .. } => "algorithm",
            Self::UnknownKid(_) | Self::NoKey { .. } => "unknown_key",
            Self::Signature => "signature",
            Self::NoExpiry | Self::Expired(_) | Self::BadTime(_) => "expired",
            Self::NotYetValid(_) => "not_yet_valid",
            Self::Issuer { .. } => "issuer",
            Self::Audience { .. } => "audience",
            Self::NoPrincipal(_) | Self::Principal { .. } => "principal",
        }
    }
}

/// One verification key.
#[derive(Clone)]
struct Key {
    kid: Option<String>,
    algorithm: Algorithm,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A parsed, checked key set; immutable once built.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Key>,
    /// Keys of the file that are not for signatures (`use: enc`, unknown `kty`).
    ignored: usize,
}

impl KeySet {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, for `/v1/status`; a key without one shows as `-`.
    pub fn kids(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| k.kid.clone().unwrap_or_else(|| "-".to_owned()))
            .collect()
    }

    /// The accepted algorithms, sorted.
    pub fn algorithms(&self) -> Vec<&'static str> {
        let set: BTreeSet<&'static str> = self.keys.iter().map(|k| alg_name(k.algorithm)).collect();
        set.into_iter().collect()
    }

    /// Verifies `token` and checks its registered claims at `now`; returns its claims.
    ///
    /// # Errors
    /// Any of the checks in the module docs fails.
    pub fn verify(
        &self,
        token: &str,
        config: &Config,
        now: Timestamp,
    ) -> Result<Map<String, Value>, TokenError> {
        let header = peek_header(token)?;
        let allowed = self.algorithms();
        if !allowed.contains(&header.alg.as_str()) {
            return Err(TokenError::Algorithm {
                alg: header.alg,
                allowed: allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let by_kid = |key: &&Key| match (&header.kid, &key.kid) {
            (Some(wanted), Some(kid)) => wanted == kid,
            // A key without an id (PEM) is a candidate for every token; a token
            // without one may be verified by any key.
            _ => true,
        };
        let candidates: Vec<&Key> = self.keys.iter().filter(by_kid).collect();
        if candidates.is_empty() {
            let kid = header.kid.clone().unwrap_or_default();
            return Err(TokenError::UnknownKid(kid));
        }
        let candidates: Vec<&Key> = candidates
            .into_iter()
            .filter(|k| alg_name(k.algorithm) == header.alg)
            .collect();
        if candidates.is_empty() {
            return Err(TokenError::NoKey {
                alg: header.alg,
                kid: header.kid.unwrap_or_default(),
            });
        }
        let mut last = TokenError::Signature;
        let mut claims = None;
        for key in candidates {
            // Claims are checked below, against the caller's clock; the library
            // checks the signature, the algorithm against the key, and `crit`.
            let mut validation = Validation::new(key.algorithm);
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.validate_aud = false;
            validation.required_spec_claims.clear();
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) => last = library_error(&e),
            }
        }
        let claims = claims.ok_or(last)?;
        check_claims(&claims, config, now)?;
        Ok(claims)
    }
}

/// `Authorization: Bearer <token>` from the original request's headers.
///
/// # Errors
/// Absent, repeated, another scheme, or too long.
pub fn bearer<'h>(headers: &'h HeaderMap, issuer: &str) -> Result<&'h str, TokenError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let missing = || TokenError::Missing {
        issuer: issuer.to_owned(),
    };
    let value = values.next().ok_or_else(missing)?;
    if values.next().is_some() {
        return Err(TokenError::Repeated);
    }
    let text = value.to_str().map_err(|_| TokenError::NotBearer)?.trim();
    if text.is_empty() {
        return Err(missing());
    }
    let (scheme, token) = text.split_once(' ').ok_or(TokenError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::NotBearer);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::NotBearer);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLong);
    }
    Ok(token)
}

/// The principal named by `claims`' principal claim.
///
/// # Errors
/// The claim is absent, not a non-empty string, or has `::` but is no UID.
pub fn principal_of(
    claims: &Map<String, Value>,
    claim: &str,
    default_type: &EntityTypeName,
) -> Result<EntityUid, TokenError> {
    let text = claims
        .get(claim)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenError::NoPrincipal(claim.to_owned()))?;
    principal::uid_or_bare_id(text, default_type).ok_or_else(|| TokenError::Principal {
        claim: claim.to_owned(),
        value: text.to_owned(),
    })
}

struct PeekedHeader {
    alg: String,
    kid: Option<String>,
}

/// The header's `alg` and `kid`, read before any key is chosen; nothing in it is
/// trusted until the signature verifies with a key whose algorithm is `alg`.
fn peek_header(token: &str) -> Result<PeekedHeader, TokenError> {
    let malformed = |why: &str| TokenError::Malformed(why.to_owned());
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a JWT has three `.`-separated parts"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| malformed("its header is not base64url"))?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|_| malformed("its header is not JSON"))?;
    let alg = value
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| malformed("its header has no `alg`"))?
        .to_owned();
    let kid = match value.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(malformed("its `kid` is not a string")),
    };
    Ok(PeekedHeader { alg, kid })
}

fn library_error(error: &jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => TokenError::Signature,
        // Also a `crit` header extension, which nothing here implements.
        ErrorKind::InvalidToken => TokenError::Malformed(
            "not a compact JWS elevate accepts (no `crit` extensions)".to_owned(),
        ),
        ErrorKind::Base64(_) => TokenError::Malformed("a part is not base64url".to_owned()),
        ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
            TokenError::Malformed("its header or claims are not a JSON object".to_owned())
        }
        ErrorKind::InvalidAlgorithm => {
            TokenError::Malformed("its algorithm does not fit the key".to_owned())
        }
        // What the key set check at load should have made impossible: refuse anyway.
        _ => TokenError::Malformed("it cannot be verified with the key set".to_owned()),
    }
}

/// `iss`, `aud`, `exp` and `nbf` against the configuration and `now`.
fn check_claims(
    claims: &Map<String, Value>,
    config: &Config,
    now: Timestamp,
) -> Result<(), TokenError> {
    let shown = |v: Option<&Value>| match v {
        None => "(none)".to_owned(),
        Some(v) => format!("`{}`", truncate(&v.to_string(), 200)),
    };
    let iss = claims.get("iss");
    if iss.and_then(Value::as_str) != Some(config.issuer.as_str()) {
        return Err(TokenError::Issuer {
            found: shown(iss),
            expected: config.issuer.clone(),
        });
    }
    let aud = claims.get("aud");
    let audience_ok = match aud {
        Some(Value::String(a)) => *a == config.audience,
        Some(Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str() == Some(config.audience.as_str())),
        _ => false,
    };
    if !audience_ok {
        return Err(TokenError::Audience {
            found: shown(aud),
            expected: config.audience.clone(),
        });
    }
    let leeway = i128::from(u64::try_from(config.leeway.as_millis()).unwrap_or(u64::MAX));
    let now_ms = i128::from(now.as_millisecond());
    let exp = numeric_date(claims, "exp")?.ok_or(TokenError::NoExpiry)?;
    // RFC 7519 4.1.4: the token must not be accepted on or after `exp`.
    if now_ms >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired(timestamp(exp)));
    }
    if let Some(nbf) = numeric_date(claims, "nbf")?
        && now_ms < nbf.saturating_sub(leeway)
    {
        return Err(TokenError::NotYetValid(timestamp(nbf)));
    }
    Ok(())
}

/// A NumericDate claim in milliseconds since the epoch; `None` when absent.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i128>, TokenError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let bad = || TokenError::BadTime(name);
    let number = value.as_number().ok_or_else(bad)?;
    if let Some(secs) = number.as_i64() {
        return Ok(Some(i128::from(secs) * 1000));
    }
    let secs = number.as_f64().filter(|s| s.is_finite()).ok_or_else(bad)?;
    // Beyond ±10^15 s no instant is meant; the bound keeps the cast exact.
    if secs.abs() > 1e15 {
        return Err(bad());
    }
    #[expect(
        clippy::cast_possible_truncation,
        reason = "bounded to ±10^18 ms just above, well inside i128"
    )]
    let ms = (secs * 1000.0).floor() as i128;
    Ok(Some(ms))
}

fn timestamp(ms: i128) -> Timestamp {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(if ms < 0 {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        })
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", text.get(..end).unwrap_or_default())
}

fn alg_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        // HMAC never gets into a key set.
        _ => "unsupported",
    }
}

// ------------------------------------------------------------------ key sets

/// Parses a key set file: a JWK set (JSON) or one or more PEM `PUBLIC KEY` blocks.
///
/// # Errors
/// Not a key set, or any key in it is unusable, secret or private: the whole file
/// is refused, so a typo never silently drops the key a token needs.
pub fn parse_key_set(bytes: &[u8]) -> Result<KeySet, KeySetError> {
    let text = std::str::from_utf8(bytes).map_err(|_| KeySetError::NotUtf8)?;
    let trimmed = text.trim_start();
    let set = if trimmed.starts_with('{') {
        parse_jwks(trimmed)?
    } else if trimmed.starts_with("-----BEGIN ") {
        parse_pem(trimmed)?
    } else {
        return Err(KeySetError::Format);
    };
    if set.keys.is_empty() {
        return Err(KeySetError::Empty);
    }
    Ok(set)
}

fn parse_jwks(text: &str) -> Result<KeySet, KeySetError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| KeySetError::Json(e.to_string()))?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| KeySetError::Json("it has no `keys` array".to_owned()))?;
    let mut keys = Vec::new();
    let mut ignored = 0;
    let mut kids = BTreeSet::new();
    for (index, raw) in list.iter().enumerate() {
        let label = match raw.get("kid").and_then(Value::as_str) {
            Some(kid) => format!("key `{kid}`"),
            None => format!("key {}", index + 1),
        };
        let Some(object) = raw.as_object() else {
            return Err(KeySetError::Invalid {
                key: label,
                reason: "not a JSON object".to_owned(),
            });
        };
        if object.get("kty").and_then(Value::as_str) == Some("oct") {
            return Err(KeySetError::Symmetric { key: label });
        }
        // RSA's private exponent and primes, EC's and OKP's private scalar.
        if ["d", "p", "q", "dp", "dq", "qi"]
            .iter()
            .any(|m| object.contains_key(*m))
        {
            return Err(KeySetError::Private { key: label });
        }
        let invalid = |reason: String| KeySetError::Invalid {
            key: label.clone(),
            reason,
        };
        let jwk: Jwk = serde_json::from_value(raw.clone()).map_err(|e| invalid(e.to_string()))?;
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature)
            || matches!(jwk.algorithm, AlgorithmParameters::Other(_))
        {
            ignored += 1;
            continue;
        }
        let key = jwk_key(&jwk, &label)?;
        if let Some(kid) = &key.kid
            && !kids.insert(kid.clone())
        {
            return Err(KeySetError::DuplicateKid(kid.clone()));
        }
        keys.push(key);
    }
    Ok(KeySet { keys, ignored })
}

fn jwk_key(jwk: &Jwk, label: &str) -> Result<Key, KeySetError> {
    let invalid = |reason: &str| KeySetError::Invalid {
        key: label.to_owned(),
        reason: reason.to_owned(),
    };
    let (natural, family_ok): (Algorithm, fn(Algorithm) -> bool) = match &jwk.algorithm {
        AlgorithmParameters::RSA(params) => {
            let n = URL_SAFE_NO_PAD
                .decode(params.n.trim_end_matches('='))
                .map_err(|_| invalid("its `n` is not base64url"))?;
            check_rsa_size(&n, label)?;
            (Algorithm::RS256, |a| {
                matches!(
                    a,
                    Algorithm::RS256
                        | Algorithm::RS384
                        | Algorithm::RS512
                        | Algorithm::PS256
                        | Algorithm::PS384
                        | Algorithm::PS512
                )
            })
        }
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => (Algorithm::ES256, |a| a == Algorithm::ES256),
            EllipticCurve::P384 => (Algorithm::ES384, |a| a == Algorithm::ES384),
            _ => return Err(invalid("only the P-256 and P-384 curves are supported")),
        },
        AlgorithmParameters::OctetKeyPair(params) => match params.curve {
            EllipticCurve::Ed25519 => (Algorithm::EdDSA, |a| a == Algorithm::EdDSA),
            _ => return Err(invalid("only the Ed25519 curve is supported for `OKP`")),
        },
        AlgorithmParameters::OctetKey(_) => {
            return Err(KeySetError::Symmetric {
                key: label.to_owned(),
            });
        }
        _ => return Err(invalid("unknown key type")),
    };
    let algorithm = match jwk.common.key_algorithm {
        None => natural,
        Some(declared) => {
            let alg: Algorithm = declared
                .to_string()
                .parse()
                .map_err(|_| invalid("its `alg` is not a signature algorithm"))?;
            if !family_ok(alg) {
                return Err(invalid(&format!(
                    "its `alg` `{declared}` does not fit its key type"
                )));
            }
            alg
        }
    };
    let decoding = DecodingKey::from_jwk(jwk).map_err(|e| invalid(&e.to_string()))?;
    probe(&decoding, algorithm, label)?;
    Ok(Key {
        kid: jwk.common.key_id.clone(),
        algorithm,
        decoding,
    })
}

fn parse_pem(text: &str) -> Result<KeySet, KeySetError> {
    let mut keys = Vec::new();
    let mut rest = text;
    let mut index = 0;
    while let Some(start) = rest.find("-----BEGIN ") {
        index += 1;
        let label = format!("PEM block {index}");
        let block_rest = rest.get(start..).unwrap_or_default();
        let kind = block_rest
            .strip_prefix("-----BEGIN ")
            .and_then(|r| r.split_once("-----"))
            .map(|(kind, _)| kind.to_owned())
            .ok_or_else(|| KeySetError::Invalid {
                key: label.clone(),
                reason: "no `-----` after `BEGIN`".to_owned(),
            })?;
        let end_marker = format!("-----END {kind}-----");
        let end = block_rest
            .find(&end_marker)
            .ok_or_else(|| KeySetError::Invalid {
                key: label.clone(),
                reason: format!("no `{end_marker}`"),
            })?
            + end_marker.len();
        let block = block_rest.get(..end).unwrap_or_default();
        rest = block_rest.get(end..).unwrap_or_default();
        if kind.contains("PRIVATE") {
            return Err(KeySetError::Private { key: label });
        }
        if kind != "PUBLIC KEY" && kind != "RSA PUBLIC KEY" {
            return Err(KeySetError::Invalid {
                key: label,
                reason: format!("a `{kind}` block; only `PUBLIC KEY` blocks are read"),
            });
        }
        keys.push(pem_key(block.as_bytes(), &label)?);
    }
    Ok(KeySet { keys, ignored: 0 })
}

fn pem_key(block: &[u8], label: &str) -> Result<Key, KeySetError> {
    let (decoding, algorithm) = if let Ok(key) = DecodingKey::from_rsa_pem(block) {
        let n = jsonwebtoken::crypto::CryptoProvider::try_get_default()
            .and_then(|p| {
                (p.key_utils.rsa_pub_components_from_public_key)(key.try_get_as_bytes().ok()?).ok()
            })
            .map(|(n, _)| n)
            .ok_or_else(|| KeySetError::Invalid {
                key: label.to_owned(),
                reason: "not a valid RSA public key".to_owned(),
            })?;
        check_rsa_size(&n, label)?;
        (key, Algorithm::RS256)
    } else if let Ok(key) = DecodingKey::from_ec_pem(block) {
        // The uncompressed SEC1 point: 1 + 2 * 32 bytes on P-256, 1 + 2 * 48 on P-384.
        let algorithm = match key.try_get_as_bytes().map(<[u8]>::len) {
            Ok(65) => Algorithm::ES256,
            Ok(97) => Algorithm::ES384,
            _ => {
                return Err(KeySetError::Invalid {
                    key: label.to_owned(),
                    reason: "only P-256 and P-384 EC keys are supported".to_owned(),
                });
            }
        };
        (key, algorithm)
    } else if let Ok(key) = DecodingKey::from_ed_pem(block) {
        (key, Algorithm::EdDSA)
    } else {
        return Err(KeySetError::Invalid {
            key: label.to_owned(),
            reason: "not an RSA, EC or Ed25519 public key".to_owned(),
        });
    };
    probe(&decoding, algorithm, label)?;
    Ok(Key {
        kid: None,
        algorithm,
        decoding,
    })
}

fn check_rsa_size(modulus: &[u8], label: &str) -> Result<(), KeySetError> {
    let significant = modulus.iter().skip_while(|b| **b == 0).count();
    let bits = significant * 8;
    if bits < MIN_RSA_BITS {
        return Err(KeySetError::WeakRsa {
            key: label.to_owned(),
            bits,
        });
    }
    Ok(())
}

/// Builds the verifier once at load, so a key the crypto backend cannot use fails
/// the file now, not every request later.
fn probe(key: &DecodingKey, algorithm: Algorithm, label: &str) -> Result<(), KeySetError> {
    jsonwebtoken::crypto::verify("AA", b"probe", key, algorithm)
        .map(|_| ())
        .map_err(|e| KeySetError::Invalid {
            key: label.to_owned(),
            reason: format!("not usable for {}: {e}", alg_name(algorithm)),
        })
}

// ------------------------------------------------------------------ reloading

/// Reload bookkeeping of the key set, as `/v1/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeysStatus {
    pub path: PathBuf,
    pub issuer: String,
    pub audience: String,
    pub principal_claim: String,
    pub leeway_ms: u64,
    /// Key ids of the live set (`-` for a key without one).
    pub keys: Vec<String>,
    pub algorithms: Vec<String>,
    /// Keys in the file that are not for signatures, left out.
    pub ignored: usize,
    /// Content hash of the live set's file.
    pub revision: String,
    pub last_reload: Timestamp,
    /// Why the file on disk is not what the live set was built from, if it is not.
    pub last_error: Option<String>,
    pub reloads: u64,
    /// Distinct bad versions seen.
    pub failures: u64,
}

#[derive(Debug)]
struct KeysState {
    live_hash: [u8; 32],
    /// The last bad content (or read error kind), so it is logged and counted once.
    failed: Option<Result<[u8; 32], io::ErrorKind>>,
    status: KeysStatus,
}

/// The live key set and how tokens are checked with it.
pub struct Keys {
    config: Config,
    /// Read lock-free by every request; written only by `reload`, under `state`.
    set: ArcSwap<KeySet>,
    /// One reload at a time. A std `Mutex`: held for a file read and a parse, never
    /// across an `.await`; requests never take it.
    state: Mutex<KeysState>,
    metrics: std::sync::Arc<Metrics>,
    /// `elevate_jwt_rejected_total{reason}`, on the server's registry.
    rejected: IntCounterVec,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("path", &self.config.keys)
            .field("keys", &self.set.load().len())
            .finish_non_exhaustive()
    }
}

/// A key set file that cannot be used, with its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JWT key set `{path}`: {source}", path = .path.display())]
pub struct KeysError {
    pub path: PathBuf,
    #[source]
    pub source: KeySetError,
}

impl Keys {
    /// Loads the key set; at startup a bad file is fatal.
    ///
    /// # Errors
    /// The file cannot be read or is not a usable key set.
    pub fn load(config: Config, metrics: std::sync::Arc<Metrics>) -> Result<Self, KeysError> {
        let bytes = read(&config.keys).map_err(|e| KeysError {
            path: config.keys.clone(),
            source: KeySetError::Read(e.to_string()),
        })?;
        let set = parse_key_set(&bytes).map_err(|source| KeysError {
            path: config.keys.clone(),
            source,
        })?;
        let hash: [u8; 32] = Sha256::digest(&bytes).into();
        tracing::info!(
            path = %config.keys.display(),
            keys = set.len(),
            algorithms = ?set.algorithms(),
            issuer = %config.issuer,
            audience = %config.audience,
            "loaded the JWT key set; principals come from bearer tokens"
        );
        metrics.register_jwt_keys_input();
        let rejected = rejected_counter(&metrics);
        let status = KeysStatus {
            path: config.keys.clone(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            principal_claim: config.principal_claim.clone(),
            leeway_ms: u64::try_from(config.leeway.as_millis()).unwrap_or(u64::MAX),
            keys: set.kids(),
            algorithms: set.algorithms().into_iter().map(str::to_owned).collect(),
            ignored: set.ignored,
            revision: super::short_hex(&hash),
            last_reload: Timestamp::now(),
            last_error: None,
            reloads: 1,
            failures: 0,
        };
        Ok(Self {
            config,
            set: ArcSwap::from_pointee(set),
            state: Mutex::new(KeysState {
                live_hash: hash,
                failed: None,
                status,
            }),
            metrics,
            rejected,
        })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The principal of a request: its bearer token, verified with the live set at
    /// `now`.
    ///
    /// # Errors
    /// No usable token; see [`TokenError`].
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        default_type: &EntityTypeName,
        now: Timestamp,
    ) -> Result<EntityUid, TokenError> {
        let result = bearer(headers, &self.config.issuer)
            .and_then(|token| self.set.load().verify(token, &self.config, now))
            .and_then(|claims| principal_of(&claims, &self.config.principal_claim, default_type));
        if let Err(e) = &result {
            self.rejected.with_label_values(&[e.reason()]).inc();
        }
        result
    }

    /// Reads the file again; returns whether a new set went live. The same content
    /// is a no-op; a failure keeps the last good set and records the error.
    pub fn reload(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let path = &self.config.keys;
        let (fingerprint, parsed) = match read(path) {
            Err(e) => (Err(e.kind()), Err(KeySetError::Read(e.to_string()))),
            Ok(bytes) => {
                let hash: [u8; 32] = Sha256::digest(&bytes).into();
                if hash == state.live_hash {
                    state.failed = None;
                    state.status.last_error = None;
                    return false;
                }
                if state.failed == Some(Ok(hash)) {
                    return false;
                }
                (Ok(hash), parse_key_set(&bytes).map(|set| (set, hash)))
            }
        };
        match parsed {
            Ok((set, hash)) => {
                tracing::info!(
                    path = %path.display(),
                    keys = set.len(),
                    algorithms = ?set.algorithms(),
                    "reloaded the JWT key set"
                );
                self.metrics.jwt_keys_reload(true);
                let status = &mut state.status;
                status.keys = set.kids();
                status.algorithms = set.algorithms().into_iter().map(str::to_owned).collect();
                status.ignored = set.ignored;
                status.revision = super::short_hex(&hash);
                status.last_reload = Timestamp::now();
                status.last_error = None;
                status.reloads += 1;
                self.set.store(std::sync::Arc::new(set));
                state.live_hash = hash;
                state.failed = None;
                true
            }
            Err(source) => {
                if state.failed.as_ref() != Some(&fingerprint) {
                    let err = KeysError {
                        path: path.clone(),
                        source,
                    };
                    tracing::warn!(
                        error = %err,
                        "JWT key set not reloaded; keeping the last good set"
                    );
                    self.metrics.jwt_keys_reload(false);
                    state.failed = Some(fingerprint);
                    state.status.last_error = Some(err.to_string());
                    state.status.failures += 1;
                }
                false
            }
        }
    }

    /// Reload status, for `/v1/status`.
    pub fn status(&self) -> KeysStatus {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .status
            .clone()
    }
}

/// The rejections counter, every reason's series created at once. Registered here
/// and not in [`Metrics`] because only servers with a key set have it.
fn rejected_counter(metrics: &Metrics) -> IntCounterVec {
    let opts = Opts::new(
        "elevate_jwt_rejected_total",
        "Gateway requests whose bearer token named no principal (401), by reason",
    );
    #[expect(
        clippy::expect_used,
        reason = "the name, help and label are valid constants, the only inputs that can fail"
    )]
    let counter = IntCounterVec::new(opts, &["reason"]).expect("a valid metric definition");
    for reason in TokenError::REASONS {
        counter.with_label_values(&[reason]);
    }
    if let Err(e) = metrics.registry().register(Box::new(counter.clone())) {
        tracing::warn!(error = %e, "elevate_jwt_rejected_total is not exported");
    }
    counter
}

fn read(path: &Path) -> io::Result<Vec<u8>> {
    std::fs::read(path)
}

#[cfg(test)]
mod tests;
