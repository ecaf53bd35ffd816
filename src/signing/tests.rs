#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use crate::feed::parse_document;

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2026-12-03T18:00:00Z";

fn document(revision: &str, generated_at: &str) -> Vec<u8> {
    format!(r#"{{"revision":"{revision}","generated_at":"{generated_at}","grants":[]}}"#)
        .into_bytes()
}

fn trust(keys: &[&FeedSigner]) -> FeedTrust {
    FeedTrust::new(
        keys.iter().map(|k| k.public_key()).collect(),
        DEFAULT_MAX_SKEW,
    )
}

fn reason(result: Result<impl std::fmt::Debug, Rejected>) -> RejectReason {
    result.expect_err("should be rejected").reason
}

#[test]
fn a_sealed_document_opens_with_its_key_to_the_exact_bytes() {
    let key = FeedSigner::generate().unwrap();
    let doc = document("7", NOW);
    let sealed = seal(&doc, std::slice::from_ref(&key));
    let envelope: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
    assert_eq!(envelope["payloadType"], PAYLOAD_TYPE);
    assert_eq!(envelope["signatures"][0]["keyid"], key.id());
    assert_eq!(key.id().len(), 16);
    let opened = open(&sealed, Some(&trust(&[&key]))).unwrap();
    assert_eq!(opened.as_ref(), doc.as_slice());
    // A sidecar without keys reads the payload too.
    assert_eq!(open(&sealed, None).unwrap().as_ref(), doc.as_slice());
    // And a plain document as it always did.
    assert_eq!(open(&doc, None).unwrap().as_ref(), doc.as_slice());
}

#[test]
fn the_signature_is_over_the_dsse_encoding_of_the_payload() {
    let key = FeedSigner::generate().unwrap();
    let doc = document("1", NOW);
    let sealed = seal(&doc, std::slice::from_ref(&key));
    let envelope: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
    let sig = STANDARD
        .decode(envelope["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    let mut message = format!(
        "DSSEv1 {} {PAYLOAD_TYPE} {} ",
        PAYLOAD_TYPE.len(),
        doc.len()
    )
    .into_bytes();
    message.extend_from_slice(&doc);
    let sig = Signature::from_slice(&sig).unwrap();
    key.key
        .verifying_key()
        .verify_strict(&message, &sig)
        .unwrap();
}

#[test]
fn another_key_an_unsigned_document_and_garbage_are_rejected() {
    let key = FeedSigner::generate().unwrap();
    let other = FeedSigner::generate().unwrap();
    let doc = document("1", NOW);
    let sealed = seal(&doc, std::slice::from_ref(&other));
    let err = open(&sealed, Some(&trust(&[&key]))).unwrap_err();
    assert_eq!(err.reason, RejectReason::UntrustedKey);
    assert!(err.to_string().contains(other.id()), "{err}");
    assert!(err.to_string().contains(key.id()), "{err}");
    assert_eq!(
        reason(open(&doc, Some(&trust(&[&key])))),
        RejectReason::Unsigned
    );
    assert_eq!(
        reason(open(b"{not json", Some(&trust(&[&key])))),
        RejectReason::Malformed
    );
    let no_signatures = seal(&doc, &[]);
    assert_eq!(
        reason(open(&no_signatures, Some(&trust(&[&key])))),
        RejectReason::UntrustedKey
    );
    let wrong_type = String::from_utf8(seal(&doc, std::slice::from_ref(&key)))
        .unwrap()
        .replace(PAYLOAD_TYPE, "application/json");
    assert_eq!(
        reason(open(wrong_type.as_bytes(), Some(&trust(&[&key])))),
        RejectReason::Malformed
    );
}

#[test]
fn any_tampered_byte_breaks_the_signature() {
    let key = FeedSigner::generate().unwrap();
    let doc = document("1", NOW);
    let sealed = seal(&doc, std::slice::from_ref(&key));
    let envelope: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
    let sig = envelope["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .to_owned();
    let trust = trust(&[&key]);
    for i in 0..doc.len() {
        let mut tampered = doc.clone();
        tampered[i] ^= 0x01;
        let forged = serde_json::json!({
            "payloadType": PAYLOAD_TYPE,
            "payload": STANDARD.encode(&tampered),
            "signatures": [{"keyid": key.id(), "sig": sig}],
        });
        let err = open(forged.to_string().as_bytes(), Some(&trust)).unwrap_err();
        assert_eq!(err.reason, RejectReason::BadSignature, "byte {i}");
    }
    // A flipped bit in the signature itself, too.
    let mut raw = STANDARD.decode(&sig).unwrap();
    raw[10] ^= 0x80;
    let forged = serde_json::json!({
        "payloadType": PAYLOAD_TYPE,
        "payload": STANDARD.encode(&doc),
        "signatures": [{"keyid": key.id(), "sig": STANDARD.encode(&raw)}],
    });
    assert_eq!(
        reason(open(forged.to_string().as_bytes(), Some(&trust))),
        RejectReason::BadSignature
    );
}

#[test]
fn rotation_trusts_every_listed_key_and_a_document_may_carry_both_signatures() {
    let old = FeedSigner::generate().unwrap();
    let new = FeedSigner::generate().unwrap();
    let both = trust(&[&old, &new]);
    let doc = document("1", NOW);
    for signers in [
        vec![old.clone()],
        vec![new.clone()],
        vec![old.clone(), new.clone()],
    ] {
        assert!(open(&seal(&doc, &signers), Some(&both)).is_ok());
    }
    // A sidecar that already dropped the old key takes the doubly signed document.
    let only_new = trust(&[&new]);
    assert!(open(&seal(&doc, &[old.clone(), new.clone()]), Some(&only_new)).is_ok());
    assert_eq!(
        reason(open(&seal(&doc, &[old]), Some(&only_new))),
        RejectReason::UntrustedKey
    );
}

#[test]
fn key_files_round_trip_through_pem() {
    let dir = tempfile::tempdir().unwrap();
    let key = FeedSigner::generate().unwrap();
    let private = dir.path().join("feed.key");
    let public = dir.path().join("feed.pub");
    std::fs::write(&private, key.private_pem().unwrap()).unwrap();
    std::fs::write(&public, key.public_pem().unwrap()).unwrap();
    let loaded = FeedSigner::load(&private).unwrap();
    assert_eq!(loaded, key);
    assert_eq!(loaded.id(), key.id());
    let trusted = TrustedKey::load(&public).unwrap();
    assert_eq!(trusted, key.public_key());
    // The two files are not interchangeable.
    let err = TrustedKey::load(&private).unwrap_err().to_string();
    assert!(err.contains("public key"), "{err}");
    let err = FeedSigner::load(&public).unwrap_err().to_string();
    assert!(err.contains("private key"), "{err}");
    assert!(format!("{key:?}").contains(key.id()));
    assert!(!format!("{key:?}").contains("SigningKey"));
}

fn parsed(revision: &str, generated_at: &str) -> Document {
    parse_document(&document(revision, generated_at)).unwrap()
}

#[test]
fn an_older_revision_is_a_rollback_and_a_newer_one_passes() {
    let key = FeedSigner::generate().unwrap();
    let trust = trust(&[&key]);
    let now = t(NOW);
    let held = parsed("10", "2026-12-03T17:00:00Z");
    let check = |rev, at| check_document(&trust, &parsed(rev, at), Some(&held), now);
    assert!(check("11", "2026-12-03T17:00:01Z").is_ok());
    // Integers compare as integers, not as text ("9" > "10" as text).
    assert_eq!(
        reason(check("9", "2026-12-03T17:30:00Z")),
        RejectReason::Rollback
    );
    assert!(
        check("100", "2026-12-03T16:00:00Z").is_ok(),
        "the seq decides"
    );
    // The same revision: re-rendered later passes, an earlier rendering is a replay.
    assert!(check("10", "2026-12-03T17:00:00Z").is_ok());
    assert!(check("10", "2026-12-03T17:10:00Z").is_ok());
    assert_eq!(
        reason(check("10", "2026-12-03T16:59:59Z")),
        RejectReason::Rollback
    );
    // Non-integer revisions: a change must be strictly newer.
    let held = parsed("abc", "2026-12-03T17:00:00Z");
    let check = |rev, at| check_document(&trust, &parsed(rev, at), Some(&held), now);
    assert!(check("abd", "2026-12-03T17:00:01Z").is_ok());
    assert_eq!(
        reason(check("abd", "2026-12-03T17:00:00Z")),
        RejectReason::Rollback
    );
    assert!(check("abc", "2026-12-03T17:00:00Z").is_ok());
    let err = check("abd", "2026-12-03T16:00:00Z").unwrap_err();
    assert!(err.message.contains("`abc`"), "{err}");
}

#[test]
fn a_document_from_the_future_beyond_the_skew_is_rejected() {
    let key = FeedSigner::generate().unwrap();
    let trust = trust(&[&key]);
    let now = t(NOW);
    let check = |at| check_document(&trust, &parsed("1", at), None, now);
    assert!(check("2026-12-03T18:00:30Z").is_ok(), "within the skew");
    let err = check("2026-12-03T18:00:31Z").unwrap_err();
    assert_eq!(err.reason, RejectReason::Future);
    assert!(err.message.contains("30s"), "{err}");
    let tight = FeedTrust::new(vec![key.public_key()], Duration::ZERO);
    assert_eq!(
        reason(check_document(
            &tight,
            &parsed("1", "2026-12-03T18:00:01Z"),
            None,
            now
        )),
        RejectReason::Future
    );
    let undated = parse_document(br#"{"revision":"1","grants":[]}"#).unwrap();
    assert_eq!(
        reason(check_document(&trust, &undated, None, now)),
        RejectReason::Malformed
    );
}

#[test]
fn every_reason_has_a_distinct_label() {
    let labels: std::collections::HashSet<_> =
        RejectReason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(labels.len(), RejectReason::ALL.len());
}

/// The store's side: a rejected document is recorded, counted once, keeps the last
/// good grants and does not refresh the feed.
mod store {
    use std::sync::Arc;

    use jiff::SignedDuration;

    use super::*;
    use crate::config::{FeedUrl, RemoteFeedConfig, Sources, Validation};
    use crate::metrics::Metrics;
    use crate::snapshot::{FeedApplied, Input, LoadError, Store};
    use crate::testutil::{grant, repo};

    const URL: &str = "http://127.0.0.1:9/v1/grants";

    fn sources(grants: Option<std::path::PathBuf>) -> Sources {
        Sources {
            policies: repo("policies"),
            schema: Some(repo("schema/elevate.cedarschema")),
            entities: Some(repo("deploy/local/entities.json")),
            grants,
            validation: Validation::Strict,
        }
    }

    fn remote_store(key: &FeedSigner, now: Timestamp) -> (Store, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
        let remote = RemoteFeedConfig::new(
            FeedUrl::parse(URL).unwrap(),
            std::time::Duration::from_secs(60),
        );
        let store = Store::open_trusting(
            sources(None),
            Some(&remote),
            Some(trust(&[key])),
            Arc::clone(&metrics),
            now,
        )
        .unwrap();
        (store, metrics)
    }

    fn feed(revision: &str, generated_at: &str) -> Vec<u8> {
        let g = grant(
            "g-1",
            r#"User::"alice""#,
            "FinOpsManager",
            r#"Workspace::"ws-1""#,
            "2026-12-03T17:00:00Z",
            "2026-12-03T19:00:00Z",
        );
        serde_json::json!({"revision": revision, "generated_at": generated_at, "grants": [g]})
            .to_string()
            .into_bytes()
    }

    fn rejected_count(metrics: &Metrics, reason: &str) -> u64 {
        let needle = format!("elevate_feed_rejected_total{{reason=\"{reason}\"}} ");
        metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(needle.as_str()))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    fn last_error(store: &Store) -> Option<String> {
        store
            .status()
            .into_iter()
            .find(|(i, _)| *i == Input::Grants)
            .and_then(|(_, s)| s.last_error)
    }

    #[test]
    fn only_signed_new_and_current_documents_go_live() {
        let key = FeedSigner::generate().unwrap();
        let start = t(NOW);
        let (store, metrics) = remote_store(&key, start);
        let sign = |doc: Vec<u8>| seal(&doc, std::slice::from_ref(&key));

        assert_eq!(
            store.apply_feed(&feed("1", NOW), start),
            FeedApplied::Rejected
        );
        assert!(last_error(&store).unwrap().contains("unsigned"));
        assert_eq!(rejected_count(&metrics, "unsigned"), 1);
        assert!(store.current().grants_suspended(start));

        let good = sign(feed("5", NOW));
        assert!(matches!(
            store.apply_feed(&good, start),
            FeedApplied::Changed { .. }
        ));
        let live = store.current();
        assert_eq!(live.grants.len(), 1);
        assert_eq!(live.revisions.grants.as_deref(), Some("5"));
        assert_eq!(last_error(&store), None);

        let later = start + SignedDuration::from_secs(10);
        let other = FeedSigner::generate().unwrap();
        let cases = [
            (seal(&feed("6", NOW), &[other]), "untrusted_key"),
            (sign(feed("4", NOW)), "rollback"),
            (sign(feed("7", "2026-12-03T18:05:00Z")), "future"),
        ];
        for (body, reason) in cases {
            assert_eq!(store.apply_feed(&body, later), FeedApplied::Rejected);
            // The same bad document again is neither a refresh nor a second count.
            assert_eq!(store.apply_feed(&body, later), FeedApplied::Rejected);
            assert_eq!(rejected_count(&metrics, reason), 1, "{reason}");
            let message = last_error(&store).unwrap();
            assert!(
                message.contains(reason) && message.contains(URL),
                "{message}"
            );
            let snap = store.current();
            assert!(
                Arc::ptr_eq(&snap, &live),
                "{reason}: the last good feed stays"
            );
            assert_eq!(snap.feed_deadline, live.feed_deadline, "not refreshed");
        }
        // The held document itself, again, is a refresh.
        assert_eq!(store.apply_feed(&good, later), FeedApplied::Unchanged);
        assert_eq!(
            store.current().feed_deadline,
            Some(later + SignedDuration::from_secs(60))
        );
        assert!(matches!(
            store.apply_feed(&sign(feed("6", NOW)), later),
            FeedApplied::Changed { .. }
        ));
    }

    #[test]
    fn a_feed_file_is_verified_at_startup_and_on_reload() {
        let key = FeedSigner::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grants.json");
        let metrics = || Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
        let now = t(NOW);

        std::fs::write(&path, feed("1", NOW)).unwrap();
        let err = Store::open_trusting(
            sources(Some(path.clone())),
            None,
            Some(trust(&[&key])),
            metrics(),
            now,
        )
        .unwrap_err();
        assert!(matches!(err, LoadError::FeedRejected { .. }), "{err}");
        assert!(err.to_string().contains("unsigned"), "{err}");

        let sealed = seal(&feed("2", NOW), std::slice::from_ref(&key));
        std::fs::write(&path, &sealed).unwrap();
        let m = metrics();
        let store = Store::open_trusting(
            sources(Some(path.clone())),
            None,
            Some(trust(&[&key])),
            Arc::clone(&m),
            now,
        )
        .unwrap();
        assert_eq!(store.current().grants.len(), 1);

        std::fs::write(&path, seal(&feed("1", NOW), std::slice::from_ref(&key))).unwrap();
        assert!(!store.reload(now));
        assert_eq!(store.current().revisions.grants.as_deref(), Some("2"));
        assert!(last_error(&store).unwrap().contains("rollback"));
        assert_eq!(rejected_count(&m, "rollback"), 1);

        std::fs::write(&path, seal(&feed("3", NOW), std::slice::from_ref(&key))).unwrap();
        assert!(store.reload(now));
        assert_eq!(store.current().revisions.grants.as_deref(), Some("3"));
        assert_eq!(last_error(&store), None);

        // Without keys, the same envelope is read as it stands.
        let plain = Store::open(sources(Some(path)), None, metrics(), now).unwrap();
        assert_eq!(plain.current().revisions.grants.as_deref(), Some("3"));
    }
}
