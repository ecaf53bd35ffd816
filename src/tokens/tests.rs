#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::Duration;

use super::*;

const CAROL: &str = "elv_carol-token";
const DAVE: &str = "elv_dave-token";
const ERIN: &str = "elv_erin-token";

fn uid(s: &str) -> EntityUid {
    EntityUid::from_str(s).unwrap()
}

fn entry(token: &str, principal: &str) -> String {
    serde_json::json!({"sha256": digest_hex(token), "principal": principal}).to_string()
}

fn file_of(entries: &[String]) -> String {
    format!("[{}]", entries.join(",\n"))
}

fn carol_and_dave() -> String {
    file_of(&[
        entry(CAROL, r#"User::"carol""#),
        entry(DAVE, r#"User::"dave""#),
    ])
}

fn parse_err(text: &str) -> String {
    TokenTable::parse(text.as_bytes()).unwrap_err().to_string()
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---- parse ----

#[test]
fn parse_accepts_entries_with_and_without_a_note() {
    let text = format!(
        r#"[{{"sha256": "{}", "principal": "User::\"carol\"", "note": "demo requester"}},
            {{"sha256": "{}", "principal": "User::\"dave\""}}]"#,
        digest_hex(CAROL).to_uppercase(),
        digest_hex(DAVE)
    );
    let table = TokenTable::parse(text.as_bytes()).unwrap();
    assert_eq!(table.len(), 2);
    assert_eq!(table.lookup(CAROL), Some(&uid(r#"User::"carol""#)));
}

#[test]
fn an_empty_array_is_valid_and_authenticates_nobody() {
    let table = TokenTable::parse(b"[]").unwrap();
    assert!(table.is_empty());
    assert_eq!(table.lookup(CAROL), None);
    assert_eq!(table.lookup(""), None);
}

#[test]
fn bad_hex_is_rejected_naming_the_entry() {
    let bad = "g".repeat(64);
    let text = file_of(&[
        entry(CAROL, r#"User::"carol""#),
        format!(r#"{{"sha256": "{bad}", "principal": "User::\"dave\""}}"#),
    ]);
    let err = TokenTable::parse(text.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            TokensError::Entry {
                index: 1,
                source: EntryError::DigestNotHex
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("entry 1: "), "{err}");
    assert!(err.to_string().contains("hex"), "{err}");
}

#[test]
fn a_digest_of_the_wrong_length_is_rejected_naming_the_entry() {
    let short = &digest_hex(DAVE)[..63];
    let text = file_of(&[
        entry(CAROL, r#"User::"carol""#),
        entry(DAVE, r#"User::"dave""#),
        format!(r#"{{"sha256": "{short}", "principal": "User::\"erin\""}}"#),
    ]);
    let message = parse_err(&text);
    assert!(message.starts_with("entry 2: "), "{message}");
    assert!(message.contains("64 hex characters"), "{message}");
    assert!(message.contains("found 63"), "{message}");
}

#[test]
fn a_bad_principal_is_rejected_naming_the_entry() {
    let text = file_of(&[format!(
        r#"{{"sha256": "{}", "principal": "carol"}}"#,
        digest_hex(CAROL)
    )]);
    let message = parse_err(&text);
    assert!(message.starts_with("entry 0: "), "{message}");
    assert!(message.contains("`principal` `carol`"), "{message}");
    assert!(message.contains("Cedar entity UID"), "{message}");
}

#[test]
fn a_duplicate_digest_is_rejected_naming_both_entries() {
    let text = file_of(&[
        entry(CAROL, r#"User::"carol""#),
        entry(DAVE, r#"User::"dave""#),
        entry(CAROL, r#"User::"mallory""#),
    ]);
    let message = parse_err(&text);
    assert_eq!(message, "entry 2: the same `sha256` as entry 0");
}

#[test]
fn a_duplicate_differing_only_in_case_is_still_a_duplicate() {
    let text = file_of(&[
        entry(CAROL, r#"User::"carol""#),
        format!(
            r#"{{"sha256": "{}", "principal": "User::\"mallory\""}}"#,
            digest_hex(CAROL).to_uppercase()
        ),
    ]);
    assert_eq!(parse_err(&text), "entry 1: the same `sha256` as entry 0");
}

#[test]
fn an_unknown_field_is_rejected_naming_the_entry() {
    let text = file_of(&[
        entry(CAROL, r#"User::"carol""#),
        format!(
            r#"{{"sha256": "{}", "principal": "User::\"dave\"", "role": "admin"}}"#,
            digest_hex(DAVE)
        ),
    ]);
    let message = parse_err(&text);
    assert!(message.starts_with("entry 1: "), "{message}");
    assert!(message.contains("unknown field `role`"), "{message}");
}

#[test]
fn a_missing_field_is_rejected_naming_the_entry() {
    let text = format!(r#"[{{"sha256": "{}"}}]"#, digest_hex(CAROL));
    let message = parse_err(&text);
    assert!(message.starts_with("entry 0: "), "{message}");
    assert!(message.contains("missing field `principal`"), "{message}");
}

#[test]
fn a_document_that_is_not_an_array_is_rejected() {
    let object = format!(
        r#"{{"sha256": "{}", "principal": "User::\"carol\""}}"#,
        digest_hex(CAROL)
    );
    assert!(matches!(
        TokenTable::parse(object.as_bytes()),
        Err(TokensError::NotArray)
    ));
    assert!(parse_err(&object).contains("not a JSON array"));
    assert!(matches!(
        TokenTable::parse(b"[{"),
        Err(TokensError::Syntax(_))
    ));
    assert!(parse_err("").starts_with("not valid JSON"));
}

#[test]
fn an_entry_that_is_not_an_object_is_rejected_naming_the_entry() {
    let text = format!(r#"[{}, 42]"#, entry(CAROL, r#"User::"carol""#));
    assert_eq!(
        parse_err(&text),
        "entry 1: not an object with `sha256` and `principal`"
    );
}

#[test]
fn a_token_pasted_into_the_file_is_never_echoed() {
    // The likely mistakes: the token instead of its digest, the token as a bare array
    // element, the whole file a token, the token in a field of the wrong type.
    let token = new_token().unwrap();
    let cases = [
        format!(r#"[{{"sha256": "{token}", "principal": "User::\"carol\""}}]"#),
        format!(r#"["{token}"]"#),
        format!(r#""{token}""#),
        format!(r#"[{{"sha256": ["{token}"], "principal": "User::\"carol\""}}]"#),
        format!(
            r#"[{{"sha256": "{}", "principal": "User::\"carol\"", "token": "{token}"}}]"#,
            digest_hex(&token)
        ),
        format!(r#"[{{"sha256": "{token}""#),
    ];
    for text in cases {
        let err = TokenTable::parse(text.as_bytes()).unwrap_err();
        let message = err.to_string();
        let debug = format!("{err:?}");
        // The hex part alone is 64 characters: a slice of it is enough to leak.
        let secret = &token[4..20];
        assert!(!message.contains(secret), "{text} -> {message}");
        assert!(!debug.contains(secret), "{text} -> {debug}");
    }
}

// ---- lookup ----

#[test]
fn lookup_finds_the_right_principal_among_several() {
    let text = file_of(&[
        entry(CAROL, r#"User::"carol""#),
        entry(DAVE, r#"User::"dave""#),
        entry(ERIN, r#"ApiKey::"erin-ci""#),
    ]);
    let table = TokenTable::parse(text.as_bytes()).unwrap();
    assert_eq!(table.lookup(CAROL), Some(&uid(r#"User::"carol""#)));
    assert_eq!(table.lookup(DAVE), Some(&uid(r#"User::"dave""#)));
    assert_eq!(table.lookup(ERIN), Some(&uid(r#"ApiKey::"erin-ci""#)));
    assert_eq!(table.lookup("elv_nobody"), None);
    assert_eq!(
        table.lookup(&digest_hex(CAROL)),
        None,
        "the digest is not a token"
    );
    assert_eq!(table.lookup(&CAROL[..CAROL.len() - 1]), None);
}

#[test]
fn new_tokens_are_prefixed_lowercase_hex_and_distinct() {
    let a = new_token().unwrap();
    let b = new_token().unwrap();
    assert_ne!(a, b);
    let hex = a.strip_prefix(TOKEN_PREFIX).unwrap();
    assert_eq!(hex.len(), 64);
    assert!(
        hex.bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    );
}

#[test]
fn digest_hex_is_sha256_in_lowercase_hex() {
    assert_eq!(
        digest_hex("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

// ---- authenticate ----

fn loaded(text: &str) -> (tempfile::TempDir, Arc<Tokens>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    std::fs::write(&path, text).unwrap();
    let tokens = Tokens::load(path).unwrap();
    (dir, tokens)
}

#[test]
fn authenticate_accepts_a_known_bearer_token_in_any_scheme_case() {
    let (_dir, tokens) = loaded(&carol_and_dave());
    let carol = uid(r#"User::"carol""#);
    for header in [
        format!("Bearer {CAROL}"),
        format!("bearer {CAROL}"),
        format!("BEARER {CAROL}"),
        format!("Bearer   {CAROL}"),
    ] {
        assert_eq!(
            tokens.authenticate(Some(&header)),
            Ok(carol.clone()),
            "{header}"
        );
    }
    assert_eq!(
        tokens.authenticate(Some(&format!("Bearer {DAVE}"))),
        Ok(uid(r#"User::"dave""#))
    );
}

#[test]
fn authenticate_tells_missing_malformed_and_unknown_apart() {
    let (_dir, tokens) = loaded(&carol_and_dave());
    assert_eq!(tokens.authenticate(None), Err(AuthError::Missing));
    for header in [
        "".to_owned(),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        CAROL.to_owned(),
        format!("Basic {CAROL}"),
        format!("Bearertoken {CAROL}"),
        format!("Bearer {CAROL} extra"),
        format!("Bearer {CAROL}\u{e9}"),
        format!("Bearer {CAROL}\u{7f}"),
    ] {
        assert_eq!(
            tokens.authenticate(Some(&header)),
            Err(AuthError::Malformed),
            "{header:?}"
        );
    }
    assert_eq!(
        tokens.authenticate(Some("Bearer elv_nobody")),
        Err(AuthError::Unknown)
    );
    assert_eq!(
        tokens.authenticate(Some(&format!("Bearer {}", digest_hex(CAROL)))),
        Err(AuthError::Unknown)
    );
}

#[test]
fn auth_errors_never_contain_the_token() {
    let (_dir, tokens) = loaded(&carol_and_dave());
    let token = new_token().unwrap();
    for header in [
        format!("Bearer {token}"),
        format!("Basic {token}"),
        format!("Bearer {token} {token}"),
        token.clone(),
    ] {
        let err = tokens.authenticate(Some(&header)).unwrap_err();
        assert!(!err.to_string().contains(&token[4..]), "{err}");
        assert!(!format!("{err:?}").contains(&token[4..]), "{err:?}");
    }
    assert_eq!(
        AuthError::Missing.to_string(),
        "no `Authorization: Bearer` token"
    );
    assert_eq!(
        AuthError::Unknown.to_string(),
        "the bearer token is not known"
    );
}

// ---- load and reload ----

#[test]
fn load_fails_on_a_bad_or_missing_file_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.json");
    let err = Tokens::load(path.clone()).unwrap_err();
    assert!(matches!(err, TokensError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("tokens.json"), "{err}");

    std::fs::write(
        &path,
        r#"[{"sha256": "00", "principal": "User::\"carol\""}]"#,
    )
    .unwrap();
    let err = Tokens::load(path).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("tokens.json`: entry 0: "), "{message}");
}

#[test]
fn reload_swaps_in_a_new_table_and_identical_content_is_a_no_op() {
    let (dir, tokens) = loaded(&file_of(&[entry(CAROL, r#"User::"carol""#)]));
    let path = dir.path().join("tokens.json");
    assert_eq!(
        tokens.authenticate(Some(&format!("Bearer {DAVE}"))),
        Err(AuthError::Unknown)
    );
    let before = tokens.status();
    assert_eq!(before.entries, 1);
    assert_eq!(before.reloads, 1);

    assert!(!tokens.reload(), "nothing changed");
    assert_eq!(tokens.status(), before);

    write_atomically(&path, &carol_and_dave());
    assert!(tokens.reload());
    assert_eq!(
        tokens.authenticate(Some(&format!("Bearer {DAVE}"))),
        Ok(uid(r#"User::"dave""#))
    );
    let after = tokens.status();
    assert_eq!(after.entries, 2);
    assert_eq!(after.reloads, 2);
    assert_eq!(after.last_error, None);
    assert!(after.last_reload >= before.last_reload);

    // Removing an entry revokes its token.
    write_atomically(&path, &file_of(&[entry(DAVE, r#"User::"dave""#)]));
    assert!(tokens.reload());
    assert_eq!(
        tokens.authenticate(Some(&format!("Bearer {CAROL}"))),
        Err(AuthError::Unknown)
    );
}

#[test]
fn bad_content_keeps_the_last_good_table_until_fixed() {
    let (dir, tokens) = loaded(&carol_and_dave());
    let path = dir.path().join("tokens.json");

    std::fs::write(&path, "[{\"sha256\": ").unwrap();
    assert!(!tokens.reload());
    assert_eq!(
        tokens.authenticate(Some(&format!("Bearer {CAROL}"))),
        Ok(uid(r#"User::"carol""#)),
        "the last good table stays"
    );
    let status = tokens.status();
    let error = status.last_error.clone().unwrap();
    assert!(
        error.contains("tokens.json") && error.contains("not valid JSON"),
        "{error}"
    );
    assert_eq!(status.failures, 1);
    assert_eq!(status.reloads, 1);
    assert_eq!(status.entries, 2);

    // The same bad content on the next rescan is not a new failure.
    assert!(!tokens.reload());
    assert_eq!(tokens.status().failures, 1);

    // A different bad version is.
    std::fs::write(&path, file_of(&[entry(CAROL, "carol")])).unwrap();
    assert!(!tokens.reload());
    let status = tokens.status();
    assert_eq!(status.failures, 2);
    assert!(status.last_error.unwrap().contains("entry 0: `principal`"));

    std::fs::write(&path, file_of(&[entry(ERIN, r#"User::"erin""#)])).unwrap();
    assert!(tokens.reload());
    let status = tokens.status();
    assert_eq!(status.last_error, None);
    assert_eq!(status.entries, 1);
    assert_eq!(
        tokens.authenticate(Some(&format!("Bearer {ERIN}"))),
        Ok(uid(r#"User::"erin""#))
    );
    assert_eq!(
        tokens.authenticate(Some(&format!("Bearer {CAROL}"))),
        Err(AuthError::Unknown)
    );
}

#[test]
fn undoing_a_bad_edit_clears_the_error_without_a_reload() {
    let (dir, tokens) = loaded(&carol_and_dave());
    let path = dir.path().join("tokens.json");
    std::fs::remove_file(&path).unwrap();
    assert!(!tokens.reload());
    let error = tokens.status().last_error.unwrap();
    assert!(error.starts_with("cannot read"), "{error}");

    std::fs::write(&path, carol_and_dave()).unwrap();
    assert!(!tokens.reload(), "the live content again: nothing to swap");
    let status = tokens.status();
    assert_eq!(status.last_error, None);
    assert_eq!(status.reloads, 1);
    assert_eq!(status.failures, 1);
}

#[test]
fn status_serializes_with_the_documented_fields() {
    let (_dir, tokens) = loaded(&carol_and_dave());
    let json = serde_json::to_value(tokens.status()).unwrap();
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "entries",
            "failures",
            "last_error",
            "last_reload",
            "path",
            "reloads"
        ]
    );
    assert_eq!(json["entries"], 2);
    assert!(json["last_reload"].as_str().unwrap().ends_with('Z'));
}

// ---- watcher ----

/// Polls `check` until it holds or `within` passes; the deadline is a failure bound,
/// not a wait.
async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

// Shorter than `RESCAN`, so only a file event can make these pass.
const PICKUP: Duration = Duration::from_secs(5);

#[tokio::test]
async fn the_watcher_picks_up_a_file_replaced_by_rename() {
    let (dir, tokens) = loaded(&file_of(&[entry(CAROL, r#"User::"carol""#)]));
    let cancel = CancellationToken::new();
    let task = tokens.spawn_watcher(cancel.clone()).unwrap();

    write_atomically(&dir.path().join("tokens.json"), &carol_and_dave());
    let dave = format!("Bearer {DAVE}");
    assert!(
        eventually(PICKUP, || tokens.authenticate(Some(&dave)).is_ok()).await,
        "not reloaded: {:?}",
        tokens.status()
    );
    assert_eq!(tokens.status().reloads, 2);

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the watcher stops when cancelled")
        .unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn the_watcher_follows_a_configmap_symlink_swap() {
    use std::os::unix::fs::symlink;

    // The layout the kubelet writes: the file is a symlink through `..data`, which is
    // itself swapped atomically to a new timestamped directory.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("..v1")).unwrap();
    std::fs::write(
        root.join("..v1/tokens.json"),
        file_of(&[entry(CAROL, r#"User::"carol""#)]),
    )
    .unwrap();
    symlink("..v1", root.join("..data")).unwrap();
    symlink("..data/tokens.json", root.join("tokens.json")).unwrap();
    let tokens = Tokens::load(root.join("tokens.json")).unwrap();
    let cancel = CancellationToken::new();
    let _task = tokens.spawn_watcher(cancel.clone()).unwrap();

    std::fs::create_dir(root.join("..v2")).unwrap();
    std::fs::write(root.join("..v2/tokens.json"), carol_and_dave()).unwrap();
    symlink("..v2", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..v1")).unwrap();

    let dave = format!("Bearer {DAVE}");
    assert!(
        eventually(PICKUP, || tokens.authenticate(Some(&dave)).is_ok()).await,
        "not reloaded: {:?}",
        tokens.status()
    );
    cancel.cancel();
}
