#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;

use super::*;

const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "elevate";

/// A signing key and the public parts a key set holds.
struct Signer {
    algorithm: Algorithm,
    encoding: EncodingKey,
    /// SubjectPublicKeyInfo DER, for PEM key sets.
    spki: Vec<u8>,
}

impl Signer {
    fn jwk(&self, kid: Option<&str>) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.algorithm).unwrap();
        jwk.common.key_id = kid.map(str::to_owned);
        serde_json::to_value(jwk).unwrap()
    }

    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0; N];
    getrandom::fill(&mut bytes).unwrap();
    bytes
}

fn rsa_signer(bits: usize) -> Signer {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePublicKey;
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits).unwrap();
    Signer {
        algorithm: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(key.to_pkcs1_der().unwrap().as_bytes()),
        spki: key
            .to_public_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec(),
    }
}

/// RSA key generation is slow in a debug build: one 2048-bit key per test binary.
fn rsa() -> &'static Signer {
    static KEY: OnceLock<Signer> = OnceLock::new();
    KEY.get_or_init(|| rsa_signer(2048))
}

fn es256() -> Signer {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let key = loop {
        if let Ok(key) = p256::SecretKey::from_slice(&random::<32>()) {
            break key;
        }
    };
    Signer {
        algorithm: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(key.to_pkcs8_der().unwrap().as_bytes()),
        spki: key
            .public_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec(),
    }
}

fn eddsa() -> Signer {
    use ed25519_dalek::pkcs8::EncodePublicKey;
    let seed = random::<32>();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    // PKCS #8 v1 (no public key inside), the form jsonwebtoken derives a JWK from.
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&seed);
    Signer {
        algorithm: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(&der),
        spki: key
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec(),
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn set_of(keys: &[Value]) -> KeySet {
    parse_key_set(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
}

fn config() -> Config {
    Config {
        keys: PathBuf::from("keys.json"),
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        principal_claim: DEFAULT_PRINCIPAL_CLAIM.to_owned(),
        leeway: DEFAULT_LEEWAY,
    }
}

fn now() -> Timestamp {
    "2026-12-03T18:00:00Z".parse().unwrap()
}

fn secs(at: Timestamp) -> i64 {
    at.as_second()
}

/// Claims valid at [`now`], with `extra` replacing or adding some.
fn claims(extra: &Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "exp": secs(now()) + 300,
        "iat": secs(now()) - 10,
    });
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn user() -> EntityTypeName {
    "User".parse().unwrap()
}

fn principal(set: &KeySet, token: &str) -> Result<String, TokenError> {
    let claims = set.verify(token, &config(), now())?;
    principal_of(&claims, "sub", &user()).map(|uid| uid.to_string())
}

#[test]
fn tokens_of_each_algorithm_verify_and_name_their_subject() {
    let (es, ed) = (es256(), eddsa());
    let set = set_of(&[
        rsa().jwk(Some("rsa-1")),
        es.jwk(Some("ec-1")),
        ed.jwk(Some("ed-1")),
    ]);
    assert_eq!(set.algorithms(), ["ES256", "EdDSA", "RS256"]);
    assert_eq!(set.kids(), ["rsa-1", "ec-1", "ed-1"]);
    for (signer, kid) in [(rsa(), "rsa-1"), (&es, "ec-1"), (&ed, "ed-1")] {
        let token = signer.sign(Some(kid), &claims(&json!({})));
        assert_eq!(
            principal(&set, &token).unwrap(),
            r#"User::"alice""#,
            "{kid}"
        );
    }
    // A whole UID in the claim keeps its type; an array audience that includes ours.
    let token = es.sign(
        Some("ec-1"),
        &claims(&json!({"sub": r#"ApiKey::"bb-ws1""#, "aud": ["other", AUDIENCE]})),
    );
    assert_eq!(principal(&set, &token).unwrap(), r#"ApiKey::"bb-ws1""#);
}

#[test]
fn each_bad_token_is_refused_for_its_own_reason() {
    let (es, ed, other) = (es256(), eddsa(), es256());
    let set = set_of(&[es.jwk(Some("ec-1")), ed.jwk(Some("ed-1"))]);
    let ok = |extra: Value| es.sign(Some("ec-1"), &claims(&extra));
    let err = |token: &str| principal(&set, token).unwrap_err();

    let t = secs(now());
    assert!(matches!(
        err(&ok(json!({"exp": t - 31}))),
        TokenError::Expired(_)
    ));
    // Within the leeway it still passes; at exactly `exp + leeway` it does not.
    assert!(principal(&set, &ok(json!({"exp": t - 29}))).is_ok());
    assert!(matches!(
        err(&ok(json!({"exp": t - 30}))),
        TokenError::Expired(_)
    ));
    assert_eq!(err(&ok(json!({"exp": null}))), TokenError::NoExpiry);
    assert_eq!(err(&ok(json!({"exp": "soon"}))), TokenError::BadTime("exp"));
    assert!(matches!(
        err(&ok(json!({"nbf": t + 31}))),
        TokenError::NotYetValid(_)
    ));
    assert!(principal(&set, &ok(json!({"nbf": t + 29}))).is_ok());
    assert!(principal(&set, &ok(json!({"exp": (t + 60) as f64 + 0.5}))).is_ok());
    let e = err(&ok(json!({"iss": "https://evil.example"})));
    assert!(matches!(e, TokenError::Issuer { .. }), "{e}");
    assert!(e.to_string().contains("evil.example"), "{e}");
    assert!(matches!(
        err(&ok(json!({"iss": null}))),
        TokenError::Issuer { .. }
    ));
    assert!(matches!(
        err(&ok(json!({"aud": "billing"}))),
        TokenError::Audience { .. }
    ));
    assert!(matches!(
        err(&ok(json!({"aud": ["a", "b"]}))),
        TokenError::Audience { .. }
    ));
    assert!(matches!(
        err(&ok(json!({"aud": null}))),
        TokenError::Audience { .. }
    ));
    assert_eq!(
        err(&ok(json!({"sub": null}))),
        TokenError::NoPrincipal("sub".into())
    );
    assert_eq!(
        err(&ok(json!({"sub": 7}))),
        TokenError::NoPrincipal("sub".into())
    );
    assert!(matches!(
        err(&ok(json!({"sub": "User::alice"}))),
        TokenError::Principal { .. }
    ));

    // The key: an unknown id, a known id whose key is of another algorithm, and a
    // signature by a key that only claims the id.
    let unknown = es.sign(Some("ec-9"), &claims(&json!({})));
    assert_eq!(err(&unknown), TokenError::UnknownKid("ec-9".into()));
    let mismatched = es.sign(Some("ed-1"), &claims(&json!({})));
    assert!(
        matches!(err(&mismatched), TokenError::NoKey { .. }),
        "{}",
        err(&mismatched)
    );
    let forged = other.sign(Some("ec-1"), &claims(&json!({})));
    assert_eq!(err(&forged), TokenError::Signature);
    // Without a kid every key of the algorithm is tried: the right one verifies.
    assert!(principal(&set, &es.sign(None, &claims(&json!({})))).is_ok());
    assert_eq!(
        err(&other.sign(None, &claims(&json!({})))),
        TokenError::Signature
    );
    // A payload edited after signing.
    let token = ok(json!({}));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(claims(&json!({"sub": "bob"})).to_string());
    assert_eq!(err(&parts.join(".")), TokenError::Signature);

    // Algorithms the set never accepts: `none`, and HMAC keyed with public bytes.
    let payload = URL_SAFE_NO_PAD.encode(claims(&json!({})).to_string());
    let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
    let e = err(&none);
    assert!(
        matches!(&e, TokenError::Algorithm { alg, .. } if alg == "none"),
        "{e}"
    );
    assert!(e.to_string().contains("`ES256`, `EdDSA`"), "{e}");
    let hmac_key = EncodingKey::from_secret(&es.spki).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("ec-1".into());
    let hs = jsonwebtoken::encode(&header, &claims(&json!({})), &hmac_key).unwrap();
    assert!(matches!(err(&hs), TokenError::Algorithm { alg, .. } if alg == "HS256"));

    for garbage in ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.e30.sig"] {
        assert!(
            matches!(err(garbage), TokenError::Malformed(_)),
            "{garbage:?}"
        );
    }
}

#[test]
fn errors_never_contain_the_token() {
    let es = es256();
    let set = set_of(&[es.jwk(Some("ec-1"))]);
    for extra in [
        json!({"exp": secs(now()) - 100}),
        json!({"aud": "x"}),
        json!({"iss": "x"}),
        json!({"sub": null}),
    ] {
        let token = es.sign(Some("ec-1"), &claims(&extra));
        let message = principal(&set, &token).unwrap_err().to_string();
        let signature = token.rsplit('.').next().unwrap();
        assert!(!message.contains(signature), "{message}");
        assert!(!message.contains(&token), "{message}");
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            hyper::header::HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn the_bearer_token_comes_from_one_authorization_header() {
    assert_eq!(
        bearer(&headers(&[("authorization", "Bearer a.b.c")]), ISSUER).unwrap(),
        "a.b.c"
    );
    assert_eq!(
        bearer(&headers(&[("authorization", "bearer  a.b.c ")]), ISSUER).unwrap(),
        "a.b.c"
    );
    let missing = bearer(&headers(&[("x-auth-principal", "alice")]), ISSUER).unwrap_err();
    assert!(!missing.had_token());
    assert!(missing.to_string().contains(ISSUER), "{missing}");
    assert_eq!(
        bearer(&headers(&[("authorization", "Basic YTpi")]), ISSUER).unwrap_err(),
        TokenError::NotBearer
    );
    assert_eq!(
        bearer(&headers(&[("authorization", "Bearer")]), ISSUER).unwrap_err(),
        TokenError::NotBearer
    );
    assert_eq!(
        bearer(
            &headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]),
            ISSUER
        )
        .unwrap_err(),
        TokenError::Repeated
    );
    let long = format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1));
    assert_eq!(
        bearer(&headers(&[("authorization", &long)]), ISSUER).unwrap_err(),
        TokenError::TooLong
    );
}

#[test]
fn a_configured_claim_and_type_name_the_principal() {
    let es = es256();
    let set = set_of(&[es.jwk(Some("ec-1"))]);
    let token = es.sign(Some("ec-1"), &claims(&json!({"email": "bb-ws1"})));
    let claims = set.verify(&token, &config(), now()).unwrap();
    let key_type: EntityTypeName = "ApiKey".parse().unwrap();
    assert_eq!(
        principal_of(&claims, "email", &key_type)
            .unwrap()
            .to_string(),
        r#"ApiKey::"bb-ws1""#
    );
    assert_eq!(
        principal_of(&claims, "preferred_username", &key_type).unwrap_err(),
        TokenError::NoPrincipal("preferred_username".into())
    );
}

#[test]
fn key_sets_refuse_secrets_private_keys_and_weak_keys_whole() {
    let (es, ed) = (es256(), eddsa());
    let parse = |keys: Vec<Value>| parse_key_set(json!({ "keys": keys }).to_string().as_bytes());
    let oct = json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0"});
    assert_eq!(
        parse(vec![es.jwk(Some("ec-1")), oct]).unwrap_err(),
        KeySetError::Symmetric {
            key: "key `h`".into()
        }
    );
    let mut private = ed.jwk(Some("ed-1"));
    private["d"] = json!("AAAA");
    assert!(matches!(
        parse(vec![private]).unwrap_err(),
        KeySetError::Private { .. }
    ));
    assert_eq!(
        parse(vec![es.jwk(Some("k")), ed.jwk(Some("k"))]).unwrap_err(),
        KeySetError::DuplicateKid("k".into())
    );
    let weak = rsa_signer(1024);
    assert!(matches!(
        parse(vec![weak.jwk(Some("r"))]).unwrap_err(),
        KeySetError::WeakRsa { bits: 1024, .. }
    ));
    // An `alg` that does not fit the key type, and an HMAC `alg` on a public key.
    let mut wrong = es.jwk(Some("ec-1"));
    wrong["alg"] = json!("RS256");
    assert!(matches!(
        parse(vec![wrong]).unwrap_err(),
        KeySetError::Invalid { .. }
    ));
    let mut hs = rsa().jwk(Some("r"));
    hs["alg"] = json!("HS256");
    assert!(matches!(
        parse(vec![hs]).unwrap_err(),
        KeySetError::Invalid { .. }
    ));
    let mut broken = es.jwk(Some("ec-1"));
    broken["x"] = json!("AAAA");
    assert!(matches!(
        parse(vec![broken]).unwrap_err(),
        KeySetError::Invalid { .. }
    ));
    // Encryption keys are left out; a set of nothing else is no key set.
    let mut enc = rsa().jwk(Some("enc"));
    enc["use"] = json!("enc");
    let set = parse(vec![enc.clone(), es.jwk(Some("ec-1"))]).unwrap();
    assert_eq!((set.len(), set.ignored), (1, 1));
    assert_eq!(parse(vec![enc]).unwrap_err(), KeySetError::Empty);
    for bad in ["", "not keys", "{}", r#"{"keys": 3}"#, "{"] {
        assert!(parse_key_set(bad.as_bytes()).is_err(), "{bad:?}");
    }
    assert_eq!(
        parse_key_set(&[0xff, 0xfe]).unwrap_err(),
        KeySetError::NotUtf8
    );
}

#[test]
fn jwk_sets_as_identity_providers_publish_them_parse() {
    let es = es256();
    let mut set: JwkSet = serde_json::from_value(json!({ "keys": [
        rsa().jwk(Some("r1")), es.jwk(Some("e1")),
    ]}))
    .unwrap();
    set.keys[0].common.public_key_use = Some(PublicKeyUse::Signature);
    let text = serde_json::to_string_pretty(&set).unwrap();
    let parsed = parse_key_set(text.as_bytes()).unwrap();
    assert_eq!(parsed.kids(), ["r1", "e1"]);
    let token = rsa().sign(Some("r1"), &claims(&json!({})));
    assert!(principal(&parsed, &token).is_ok());
}

#[test]
fn pem_public_keys_verify_tokens_of_their_algorithm_whatever_the_kid() {
    let (es, ed) = (es256(), eddsa());
    let file = [
        pem("PUBLIC KEY", &rsa().spki),
        pem("PUBLIC KEY", &es.spki),
        pem("PUBLIC KEY", &ed.spki),
    ]
    .join("\n");
    let set = parse_key_set(file.as_bytes()).unwrap();
    assert_eq!(set.algorithms(), ["ES256", "EdDSA", "RS256"]);
    assert_eq!(set.kids(), ["-", "-", "-"]);
    for signer in [rsa(), &es, &ed] {
        let token = signer.sign(Some("whatever"), &claims(&json!({})));
        assert_eq!(principal(&set, &token).unwrap(), r#"User::"alice""#);
    }
    assert_eq!(
        principal(&set, &es256().sign(None, &claims(&json!({})))).unwrap_err(),
        TokenError::Signature
    );
    let private = pem("PRIVATE KEY", &[1, 2, 3]);
    assert!(matches!(
        parse_key_set(format!("{}{private}", pem("PUBLIC KEY", &es.spki)).as_bytes()).unwrap_err(),
        KeySetError::Private { .. }
    ));
    assert!(matches!(
        parse_key_set(pem("CERTIFICATE", &[1]).as_bytes()).unwrap_err(),
        KeySetError::Invalid { .. }
    ));
    assert!(matches!(
        parse_key_set(pem("PUBLIC KEY", &[1, 2, 3]).as_bytes()).unwrap_err(),
        KeySetError::Invalid { .. }
    ));
}

#[test]
fn every_refusal_has_a_closed_reason_label() {
    let labels: BTreeSet<&str> = [
        TokenError::Missing {
            issuer: String::new(),
        },
        TokenError::NotBearer,
        TokenError::Algorithm {
            alg: String::new(),
            allowed: String::new(),
        },
        TokenError::UnknownKid(String::new()),
        TokenError::Signature,
        TokenError::Expired(Timestamp::UNIX_EPOCH),
        TokenError::NotYetValid(Timestamp::UNIX_EPOCH),
        TokenError::Issuer {
            found: String::new(),
            expected: String::new(),
        },
        TokenError::Audience {
            found: String::new(),
            expected: String::new(),
        },
        TokenError::NoPrincipal(String::new()),
    ]
    .iter()
    .map(TokenError::reason)
    .collect();
    assert_eq!(labels.len(), 10);
}
