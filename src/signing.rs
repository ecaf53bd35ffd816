//! Signed grant feeds: Ed25519 key files (`elevate keygen`), the envelope the workflow
//! wraps every feed revision in, and the checks a sidecar makes before a feed goes live.
//!
//! # The envelope
//!
//! A signed feed is a [DSSE] envelope, a JSON object that carries the feed document
//! itself, byte for byte, and its signatures:
//!
//! ```json
//! {"payloadType": "application/vnd.elevate.grant-feed+json",
//!  "payload": "<standard base64 of the exact document bytes>",
//!  "signatures": [{"keyid": "<16 hex>", "sig": "<standard base64 of 64 bytes>"}]}
//! ```
//!
//! Each `sig` is Ed25519 over DSSE's pre-authentication encoding of the payload:
//! `"DSSEv1" SP len(type) SP type SP len(payload) SP payload`, lengths in ASCII decimal
//! bytes, `payload` the decoded document bytes. Binding the type means a signature made
//! for anything else with the same key can never pass as a feed. `keyid` is the first
//! 16 hex digits of the SHA-256 of the raw 32-byte public key; it only picks the key to
//! try, the signature decides. The workflow signs with every `--feed-signing-key` it
//! was given, so during a rotation one document carries the old and the new signature.
//!
//! The same envelope is the body of `GET /v1/grants` and the content of the feed file.
//! An envelope rather than a detached signature because the file then changes in one
//! atomic rename: a detached `grants.json.sig` is a second file, and whatever order the
//! two are renamed in, a watcher can read one new and one old (and reject a good feed,
//! or, worse, be tempted to accept a new feed under an old signature). It also survives
//! any HTTP server, CDN or object store in between, which a signature header may not.
//!
//! # What a sidecar with trusted keys accepts
//!
//! With `--feed-public-key` (repeatable: every key listed is trusted, for rotation) a
//! document goes live only if all of these hold, checked in this order; otherwise it is
//! rejected with the [`RejectReason`] in brackets, the last good grants stay, and the
//! feed is not refreshed (a remote feed keeps ageing toward `--max-feed-age`):
//!
//! * it is an envelope [`unsigned`], well formed [`malformed`], with a signature by a
//!   trusted key id [`untrusted_key`] that verifies [`bad_signature`];
//! * its `generated_at` is present [`malformed`] and not later than the sidecar's clock
//!   plus `--feed-max-skew-ms` [`future`];
//! * it is not older than the document the sidecar holds [`rollback`]: when both
//!   revisions are integers (the workflow's are event sequence numbers) the new one is
//!   not smaller, and an equal one has a `generated_at` not earlier; otherwise an equal
//!   revision needs a `generated_at` not earlier, a different one a strictly later one.
//!
//! Without trusted keys nothing changes: plain documents are accepted, and so are
//! envelopes, whose payload is read without checking signatures (so the workflow can
//! start signing before its sidecars are given the key).
//!
//! [DSSE]: https://github.com/secure-systems-lab/dsse/blob/master/envelope.md
//! [`unsigned`]: RejectReason::Unsigned
//! [`malformed`]: RejectReason::Malformed
//! [`untrusted_key`]: RejectReason::UntrustedKey
//! [`bad_signature`]: RejectReason::BadSignature
//! [`future`]: RejectReason::Future
//! [`rollback`]: RejectReason::Rollback

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::feed::Document;

/// The envelope's `payloadType`.
pub const PAYLOAD_TYPE: &str = "application/vnd.elevate.grant-feed+json";
/// How far a feed's `generated_at` may be ahead of the sidecar's clock.
pub const DEFAULT_MAX_SKEW: Duration = Duration::from_secs(30);

/// A key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not {expected}: {message}")]
    Format {
        path: PathBuf,
        expected: &'static str,
        message: String,
    },
    #[error("cannot generate a key: {0}")]
    Random(String),
    #[error("cannot encode the key: {0}")]
    Encode(String),
}

/// The key id of `key`: the first 16 hex digits of SHA-256 of its 32 raw bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
        .get(..16)
        .unwrap_or_default()
        .to_owned()
}

/// A private key the workflow signs feeds with.
#[derive(Clone)]
pub struct FeedSigner {
    key: SigningKey,
    id: String,
}

impl fmt::Debug for FeedSigner {
    // Never the key itself, not even in a debug log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedSigner").field("id", &self.id).finish()
    }
}

impl PartialEq for FeedSigner {
    fn eq(&self, other: &Self) -> bool {
        self.key.verifying_key() == other.key.verifying_key()
    }
}

impl Eq for FeedSigner {}

impl FeedSigner {
    /// A new random key, from the operating system's generator.
    ///
    /// # Errors
    /// The generator fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_key(SigningKey::from_bytes(&seed)))
    }

    fn from_key(key: SigningKey) -> Self {
        let id = key_id(&key.verifying_key());
        Self { key, id }
    }

    /// Reads a PKCS#8 PEM private key file (`elevate keygen`'s `.key`, or `openssl
    /// genpkey -algorithm ed25519`).
    ///
    /// # Errors
    /// It cannot be read or is not an Ed25519 private key.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read(path)?;
        SigningKey::from_pkcs8_pem(text.trim_start())
            .map(Self::from_key)
            .map_err(|e| KeyError::Format {
                path: path.to_path_buf(),
                expected: "an Ed25519 private key in PKCS#8 PEM (`elevate keygen`)",
                message: e.to_string(),
            })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The private key as PKCS#8 PEM.
    ///
    /// # Errors
    /// Encoding fails (it does not for a valid key).
    pub fn private_pem(&self) -> Result<String, KeyError> {
        // PKCS#8 v1 (the seed alone): OpenSSL 3 reads it, and not every version reads
        // the v2 form that carries the public key too.
        let bytes = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.as_str().to_owned())
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    /// The public key as SubjectPublicKeyInfo PEM, what `--feed-public-key` reads.
    ///
    /// # Errors
    /// Encoding fails (it does not for a valid key).
    pub fn public_pem(&self) -> Result<String, KeyError> {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    pub fn public_key(&self) -> TrustedKey {
        TrustedKey::new(self.key.verifying_key())
    }
}

/// A public key a sidecar accepts feeds from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    key: VerifyingKey,
    id: String,
}

impl TrustedKey {
    pub fn new(key: VerifyingKey) -> Self {
        Self {
            id: key_id(&key),
            key,
        }
    }

    /// Reads a SubjectPublicKeyInfo PEM public key file (`elevate keygen`'s `.pub`).
    ///
    /// # Errors
    /// It cannot be read or is not an Ed25519 public key.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read(path)?;
        VerifyingKey::from_public_key_pem(text.trim_start())
            .map(Self::new)
            .map_err(|e| KeyError::Format {
                path: path.to_path_buf(),
                expected: "an Ed25519 public key in PEM (`elevate keygen`'s `.pub`)",
                message: e.to_string(),
            })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// What a sidecar requires of a feed: a signature by one of `keys`, and a
/// `generated_at` no further ahead of its clock than `max_skew`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedTrust {
    keys: Vec<TrustedKey>,
    max_skew: SignedDuration,
}

impl FeedTrust {
    pub fn new(keys: Vec<TrustedKey>, max_skew: Duration) -> Self {
        Self {
            keys,
            max_skew: SignedDuration::try_from(max_skew).unwrap_or(SignedDuration::MAX),
        }
    }

    /// Reads every public key file.
    ///
    /// # Errors
    /// One of them cannot be read or is not a public key.
    pub fn load(paths: &[PathBuf], max_skew: Duration) -> Result<Self, KeyError> {
        let keys = paths
            .iter()
            .map(|p| TrustedKey::load(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(keys, max_skew))
    }

    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(TrustedKey::id).collect()
    }
}

/// Why a feed document was refused as a whole. The label set of
/// `elevate_feed_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    Unsigned,
    Malformed,
    UntrustedKey,
    BadSignature,
    Rollback,
    Future,
}

impl RejectReason {
    pub const ALL: [Self; 6] = [
        Self::Unsigned,
        Self::Malformed,
        Self::UntrustedKey,
        Self::BadSignature,
        Self::Rollback,
        Self::Future,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unsigned => "unsigned",
            Self::Malformed => "malformed",
            Self::UntrustedKey => "untrusted_key",
            Self::BadSignature => "bad_signature",
            Self::Rollback => "rollback",
            Self::Future => "future",
        }
    }
}

/// A feed document a sidecar refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("feed rejected ({reason}): {message}", reason = .reason.as_str())]
pub struct Rejected {
    pub reason: RejectReason,
    pub message: String,
}

fn rejected(reason: RejectReason, message: impl Into<String>) -> Rejected {
    Rejected {
        reason,
        message: message.into(),
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "payloadType", borrow)]
    payload_type: Cow<'a, str>,
    #[serde(borrow)]
    payload: Cow<'a, str>,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature<'a>>,
}

#[derive(Serialize, Deserialize)]
struct EnvelopeSignature<'a> {
    #[serde(default, borrow)]
    keyid: Cow<'a, str>,
    #[serde(borrow)]
    sig: Cow<'a, str>,
}

/// Only whether there is a `payload` key: a plain document has none. Everything else
/// is skipped without being built.
#[derive(Deserialize)]
struct Probe {
    payload: Option<serde::de::IgnoredAny>,
}

/// DSSE's pre-authentication encoding: what each signature is over.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let header = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    );
    let mut message = Vec::with_capacity(header.len() + payload.len());
    message.extend_from_slice(header.as_bytes());
    message.extend_from_slice(payload);
    message
}

/// Wraps `document` in an envelope signed by every one of `signers`.
pub fn seal(document: &[u8], signers: &[FeedSigner]) -> Vec<u8> {
    let message = pae(PAYLOAD_TYPE, document);
    let envelope = Envelope {
        payload_type: Cow::Borrowed(PAYLOAD_TYPE),
        payload: Cow::Owned(STANDARD.encode(document)),
        signatures: signers
            .iter()
            .map(|s| EnvelopeSignature {
                keyid: Cow::Borrowed(s.id()),
                sig: Cow::Owned(STANDARD.encode(s.key.sign(&message).to_bytes())),
            })
            .collect(),
    };
    // Strings and a list of them always serialize.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// The document bytes inside `bytes`: the bytes themselves for a plain document, the
/// payload of an envelope. With `trust`, only an envelope with a signature that
/// verifies with a trusted key passes; without, an envelope's signatures are not read.
///
/// # Errors
/// With `trust`: not a signed envelope, or no signature verifies. Without: an envelope
/// whose payload cannot be decoded.
pub fn open<'a>(bytes: &'a [u8], trust: Option<&FeedTrust>) -> Result<Cow<'a, [u8]>, Rejected> {
    let is_envelope = match serde_json::from_slice::<Probe>(bytes) {
        Ok(probe) => probe.payload.is_some(),
        // Not a JSON object: without trust, the document parser says what is wrong.
        Err(e) if trust.is_some() => {
            return Err(rejected(
                RejectReason::Malformed,
                format!("not a JSON object: {e}"),
            ));
        }
        Err(_) => false,
    };
    if !is_envelope {
        return match trust {
            Some(_) => Err(rejected(
                RejectReason::Unsigned,
                "the feed is a plain document, not a signed envelope",
            )),
            None => Ok(Cow::Borrowed(bytes)),
        };
    }
    let envelope: Envelope<'_> = serde_json::from_slice(bytes).map_err(|e| {
        rejected(
            RejectReason::Malformed,
            format!("not a signed feed envelope: {e}"),
        )
    })?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(rejected(
            RejectReason::Malformed,
            format!(
                "envelope `payloadType` is `{}`, not `{PAYLOAD_TYPE}`",
                envelope.payload_type
            ),
        ));
    }
    let payload = STANDARD.decode(envelope.payload.as_bytes()).map_err(|e| {
        rejected(
            RejectReason::Malformed,
            format!("envelope `payload` is not base64: {e}"),
        )
    })?;
    if let Some(trust) = trust {
        verify(&envelope.signatures, &payload, trust)?;
    }
    Ok(Cow::Owned(payload))
}

fn verify(
    signatures: &[EnvelopeSignature<'_>],
    payload: &[u8],
    trust: &FeedTrust,
) -> Result<(), Rejected> {
    let message = pae(PAYLOAD_TYPE, payload);
    let mut tried = Vec::new();
    for signature in signatures {
        let Some(key) = trust.keys.iter().find(|k| k.id == signature.keyid) else {
            continue;
        };
        tried.push(key.id.as_str());
        let good = STANDARD
            .decode(signature.sig.as_bytes())
            .ok()
            .and_then(|raw| Signature::from_slice(&raw).ok())
            // Strict: no malleable or small-order signatures.
            .is_some_and(|sig| key.key.verify_strict(&message, &sig).is_ok());
        if good {
            return Ok(());
        }
    }
    let trusted = trust.key_ids().join(", ");
    if tried.is_empty() {
        let signed_by: Vec<&str> = signatures.iter().map(|s| s.keyid.as_ref()).collect();
        let signed_by = if signed_by.is_empty() {
            "no key".to_owned()
        } else {
            signed_by.join(", ")
        };
        Err(rejected(
            RejectReason::UntrustedKey,
            format!("signed by {signed_by}, none of the trusted keys ({trusted})"),
        ))
    } else {
        Err(rejected(
            RejectReason::BadSignature,
            format!(
                "the signature by trusted key {} does not verify",
                tried.join(", ")
            ),
        ))
    }
}

/// The checks on a verified document's own fields: `generated_at` present and not
/// ahead of `now` by more than the skew, and `doc` not older than `held`.
///
/// # Errors
/// The first check that fails.
pub fn check_document(
    trust: &FeedTrust,
    doc: &Document,
    held: Option<&Document>,
    now: Timestamp,
) -> Result<(), Rejected> {
    let Some(generated_at) = doc.generated_at else {
        return Err(rejected(
            RejectReason::Malformed,
            "a signed feed must carry `generated_at`",
        ));
    };
    let limit = now.saturating_add(trust.max_skew).unwrap_or(Timestamp::MAX);
    if generated_at > limit {
        return Err(rejected(
            RejectReason::Future,
            format!(
                "generated at {generated_at}, more than {:#} after this sidecar's clock ({now})",
                trust.max_skew
            ),
        ));
    }
    match held {
        Some(held) => not_older(doc, held, generated_at),
        None => Ok(()),
    }
}

fn not_older(doc: &Document, held: &Document, generated_at: Timestamp) -> Result<(), Rejected> {
    let held_at = held.generated_at.unwrap_or(Timestamp::MIN);
    let rollback = |why: String| {
        Err(rejected(
            RejectReason::Rollback,
            format!(
                "revision `{}` generated at {generated_at} {why} than the held revision `{}` generated at {held_at}",
                doc.revision, held.revision
            ),
        ))
    };
    let integers = (
        doc.revision.parse::<u64>().ok(),
        held.revision.parse::<u64>().ok(),
    );
    match integers {
        (Some(new), Some(old)) if new > old => Ok(()),
        (Some(new), Some(old)) if new < old => rollback("is older".into()),
        _ if doc.revision == held.revision => {
            if generated_at >= held_at {
                Ok(())
            } else {
                rollback("was generated earlier".into())
            }
        }
        _ => {
            if generated_at > held_at {
                Ok(())
            } else {
                rollback("is not newer".into())
            }
        }
    }
}

#[cfg(test)]
mod tests;
