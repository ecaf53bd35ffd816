//! The grant feed file under faults, against a real `elevate serve` process: truncated
//! mid-write, replaced by a directory, deleted, made unreadable, swapped through a
//! Kubernetes-style `..data` symlink to a broken revision. Each time decisions keep
//! the last good grants, `/v1/status` says why, readiness holds, and the next good
//! file is picked up with no restart.
//!
//! (The remote feed's faults — down, hung, garbage, backoff, suspension after
//! `max_feed_age` — are in `remote_feed.rs`; a replayed older signed revision in
//! `signed_feed.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod serve_proc;

use std::ffi::OsString;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use serve_proc::{Server, poll, repo};

const ALICE: &str = "User::\"alice\"";
const PAY: &str = "Action::\"createPaymentMethod\"";
const PM1: &str = "PaymentMethod::\"pm-1\"";
const RELOAD: Duration = Duration::from_secs(15);

/// A feed of one FinOpsManager grant for alice in ws-1, id `g-REVISION`, in force now.
fn feed_text(revision: &str) -> String {
    let now = Timestamp::now();
    json!({
        "revision": revision,
        "generated_at": now.to_string(),
        "grants": [{
            "id": format!("g-{revision}"),
            "principal": ALICE,
            "role": "FinOpsManager",
            "scope": "Workspace::\"ws-1\"",
            "not_before": (now - SignedDuration::from_mins(30)).to_string(),
            "expires_at": (now + SignedDuration::from_mins(90)).to_string(),
            "approved_by": ["User::\"carol\""],
            "requested_by": ALICE,
            "reason": "fault injection",
        }],
    })
    .to_string()
}

/// Temp file, rename: how a careful writer replaces the feed.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_file_name(".grants.json.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Feed {
    server: Server,
    path: PathBuf,
}

impl Feed {
    fn grants(&self) -> Value {
        self.server.status()["inputs"]["grants"].clone()
    }

    /// Waits for a failed reload whose error contains `needle`, then checks that the
    /// last good revision still decides and that the server is still ready.
    #[track_caller]
    fn assert_kept(&self, revision: &str, needle: &str) -> Value {
        let status = poll(
            &format!("a reload error containing {needle:?}"),
            RELOAD,
            || {
                let s = self.grants();
                s["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains(needle))
                    .then_some(s)
            },
        );
        assert_eq!(status["revision"], revision, "{status}");
        self.assert_decides_with(revision);
        assert_eq!(self.server.get("/readyz").unwrap().status, 200);
        status
    }

    /// Waits until `revision` is loaded with no error left.
    #[track_caller]
    fn assert_recovered(&self, revision: &str) {
        poll(&format!("revision {revision} loaded"), RELOAD, || {
            let s = self.grants();
            (s["revision"] == revision && s["last_error"].is_null()).then_some(())
        });
        self.assert_decides_with(revision);
    }

    #[track_caller]
    fn assert_decides_with(&self, revision: &str) {
        let answer = self.server.decide(ALICE, PAY, PM1);
        assert_eq!(answer["decision"], "Allow", "{answer}");
        assert_eq!(
            answer["grants"],
            json!([format!("g-{revision}")]),
            "{answer}"
        );
    }
}

/// `setpriv` to `nobody` when the tests run as root: root reads a mode-000 file, so
/// only an unprivileged server can find its feed unreadable.
fn unprivileged() -> Vec<&'static str> {
    let out = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&out.stdout).trim() == "0" {
        vec![
            "setpriv",
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
        ]
    } else {
        Vec::new()
    }
}

#[test]
fn a_feed_file_that_breaks_in_every_way_keeps_the_last_good_grants_until_it_is_good_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let feed_dir = dir.path().join("feed");
    std::fs::create_dir(&feed_dir).unwrap();
    std::fs::set_permissions(&feed_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = feed_dir.join("grants.json");
    write_atomic(&path, &feed_text("1"));
    let root = repo();
    let args: Vec<OsString> = vec![
        "--policies".into(),
        root.join("policies").into(),
        "--schema".into(),
        root.join("schema/elevate.cedarschema").into(),
        "--entities".into(),
        root.join("deploy/local/entities.json").into(),
        "--grants".into(),
        path.clone().into(),
        "--debounce-ms".into(),
        "50".into(),
        "--rescan-ms".into(),
        "500".into(),
    ];
    let wrapper = unprivileged();
    let server = Server::start_wrapped(&wrapper, &args, &dir.path().join("server.log"), |_| {});
    let feed = Feed { server, path };
    feed.assert_recovered("1");

    // Truncated mid-write: an in-place writer has written half of revision 2.
    let text = feed_text("2");
    std::fs::write(&feed.path, &text[..text.len() / 2]).unwrap();
    feed.assert_kept("1", "grant feed is not valid JSON");
    std::fs::write(&feed.path, &text).unwrap();
    feed.assert_recovered("2");

    // Replaced by a directory.
    std::fs::remove_file(&feed.path).unwrap();
    std::fs::create_dir(&feed.path).unwrap();
    feed.assert_kept("2", "Is a directory");
    std::fs::remove_dir(&feed.path).unwrap();
    write_atomic(&feed.path, &feed_text("3"));
    feed.assert_recovered("3");

    // Deleted.
    std::fs::remove_file(&feed.path).unwrap();
    feed.assert_kept("3", "No such file or directory");
    write_atomic(&feed.path, &feed_text("4"));
    feed.assert_recovered("4");

    // Unreadable (the server runs as `nobody` when the tests run as root).
    let tmp = feed_dir.join(".grants.json.tmp");
    std::fs::write(&tmp, feed_text("5")).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::rename(&tmp, &feed.path).unwrap();
    feed.assert_kept("4", "Permission denied");
    std::fs::set_permissions(&feed.path, std::fs::Permissions::from_mode(0o644)).unwrap();
    feed.assert_recovered("5");

    // A ConfigMap volume: `grants.json -> ..data/grants.json`, `..data -> ..STAMP`.
    // The kubelet publishes a broken revision by swapping `..data`, then a good one.
    let publish = |stamp: &str, text: &str| {
        let stamped = feed_dir.join(stamp);
        std::fs::create_dir(&stamped).unwrap();
        std::fs::set_permissions(&stamped, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(stamped.join("grants.json"), text).unwrap();
        std::fs::set_permissions(
            stamped.join("grants.json"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let tmp = feed_dir.join("..data_tmp");
        symlink(stamp, &tmp).unwrap();
        std::fs::rename(&tmp, feed_dir.join("..data")).unwrap();
    };
    publish("..2026_12_03_a", &feed_text("6"));
    let link = feed_dir.join(".grants.json.link");
    symlink("..data/grants.json", &link).unwrap();
    std::fs::rename(&link, &feed.path).unwrap();
    feed.assert_recovered("6");
    let text = feed_text("7");
    publish("..2026_12_03_b", &text[..text.len() - 10]);
    feed.assert_kept("6", "grant feed is not valid JSON");
    publish("..2026_12_03_c", &feed_text("8"));
    feed.assert_recovered("8");

    let failures = feed.grants()["failures"].as_u64().unwrap();
    assert!(
        failures >= 5,
        "{failures} failed reloads counted for 5 faults"
    );
    let metrics = feed.server.get("/metrics").unwrap().text();
    let errors = metrics
        .lines()
        .find(|l| {
            l.starts_with("elevate_reload_total{")
                && l.contains("input=\"grants\"")
                && l.contains("outcome=\"error\"")
        })
        .unwrap_or_else(|| panic!("no grants reload error series:\n{metrics}"));
    let count: f64 = errors.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 5.0, "{errors}");
}
