//! Hot reload of each input, good and bad, against a real server: real files in a
//! `TempDir`, then polling `/v1/status` for the next generation (or the recorded
//! error), never a fixed sleep.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::*;

const FINOPS_ALICE: &str = "g-finops-alice";

fn finops_alice() -> Value {
    grant_now(
        FINOPS_ALICE,
        &user("alice"),
        "FinOpsManager",
        &uid("Workspace", "ws-1"),
    )
}

/// A server whose feed holds alice's FinOps grant on ws-1.
async fn server_with_alice_grant() -> TestServer {
    TestServer::with_grants(vec![finops_alice()]).await
}

/// Waits for the next generation after `before`; returns the status document.
async fn next_generation(server: &TestServer, before: u64) -> Value {
    server.wait_for_generation(before + 1, RELOAD_TIMEOUT).await
}

/// Waits until `inputs.<input>.last_error` mentions `needle`; returns the status.
async fn wait_for_error(server: &TestServer, input: &str, needle: &str) -> Value {
    server
        .wait_for_status(
            &format!("inputs.{input}.last_error containing `{needle}`"),
            RELOAD_TIMEOUT,
            |s| {
                s["inputs"][input]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains(needle))
            },
        )
        .await
}

/// The decisions every "last good stays" test re-checks: a workspace role and a grant.
async fn assert_baseline_decisions(server: &TestServer) {
    let answer = server
        .decide(
            &user("alice"),
            &action("readProject"),
            &uid("Project", "checkout"),
        )
        .await;
    assert_answer(&answer, "Allow", &["workspace-member-read"], &[]);
    let answer = server
        .decide(
            &user("alice"),
            &action("createPaymentMethod"),
            &uid("PaymentMethod", "pm-1"),
        )
        .await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    let answer = server
        .decide(
            &user("carol"),
            &action("readProject"),
            &uid("Project", "checkout"),
        )
        .await;
    assert_answer(&answer, "Deny", &[], &[]);
}

async fn reload_errors(server: &TestServer, input: &str) -> f64 {
    let text = server.metrics().await;
    metric_value(
        &text,
        &format!("elevate_reload_total{{input=\"{input}\",outcome=\"error\"}}"),
    )
}

const CAROL_READS_CHECKOUT: &str = r#"// Added by a reload test.
@id("carol-reads-checkout")
permit (
  principal == User::"carol",
  action == Action::"readProject",
  resource == Project::"checkout"
);
"#;

/// A syntax error on line 4 of the file.
const BROKEN_POLICY: &str = r#"// Broken on purpose.
@id("carol-reads-ledger")
permit (
  principal == User::"carol"
  action == Action::"readProject",
  resource == Project::"ledger"
);
"#;

// ------------------------------------------------------------------ policies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_permit_file_changes_decisions_after_reload() {
    let server = server_with_alice_grant().await;
    let before = server.status().await;
    let answer = server
        .decide(
            &user("carol"),
            &action("readProject"),
            &uid("Project", "checkout"),
        )
        .await;
    assert_answer(&answer, "Deny", &[], &[]);

    write_atomic(&server.layout.policy("carol.cedar"), CAROL_READS_CHECKOUT);
    let after = next_generation(&server, before["generation"].as_u64().unwrap()).await;
    assert_ne!(
        after["revisions"]["policies"],
        before["revisions"]["policies"]
    );
    assert_eq!(after["revisions"]["grants"], before["revisions"]["grants"]);
    assert_eq!(after["inputs"]["policies"]["last_error"], Value::Null);
    assert_eq!(after["inputs"]["policies"]["reloads"], 2);
    assert_eq!(after["policies"]["static"], 20);

    let answer = server
        .decide(
            &user("carol"),
            &action("readProject"),
            &uid("Project", "checkout"),
        )
        .await;
    assert_answer(&answer, "Allow", &["carol-reads-checkout"], &[]);
    // Only that one project: the new permit is exact.
    let answer = server
        .decide(
            &user("carol"),
            &action("readProject"),
            &uid("Project", "ledger"),
        )
        .await;
    assert_answer(&answer, "Deny", &[], &[]);
    // The grants were re-linked against the new bundle and still apply.
    assert_baseline_decisions_except_carol(&server).await;
}

async fn assert_baseline_decisions_except_carol(server: &TestServer) {
    let answer = server
        .decide(
            &user("alice"),
            &action("readProject"),
            &uid("Project", "checkout"),
        )
        .await;
    assert_answer(&answer, "Allow", &["workspace-member-read"], &[]);
    let answer = server
        .decide(
            &user("alice"),
            &action("createPaymentMethod"),
            &uid("PaymentMethod", "pm-1"),
        )
        .await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_policy_keeps_the_last_good_set_until_it_is_fixed() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    let broken = server.layout.policy("carol.cedar");

    write_atomic(&broken, BROKEN_POLICY);
    let status = wait_for_error(&server, "policies", "carol.cedar").await;
    let error = status["inputs"]["policies"]["last_error"].as_str().unwrap();
    assert!(
        error.contains("carol.cedar:5:"),
        "the error names file and line: {error}"
    );
    assert!(
        status["inputs"]["policies"]["failures"].as_u64().unwrap() >= 1,
        "{status:#}"
    );
    assert_eq!(
        status["generation"].as_u64().unwrap(),
        generation,
        "{status:#}"
    );
    assert_eq!(status["policies"]["static"], 19);
    assert!(reload_errors(&server, "policies").await >= 1.0);
    assert_baseline_decisions(&server).await;
    let answer = server
        .decide(
            &user("carol"),
            &action("readProject"),
            &uid("Project", "ledger"),
        )
        .await;
    assert_answer(&answer, "Deny", &[], &[]);

    // Fixed: the next generation has it, and the error is gone.
    write_atomic(
        &broken,
        &BROKEN_POLICY.replace("User::\"carol\"\n", "User::\"carol\",\n"),
    );
    let status = next_generation(&server, generation).await;
    assert_eq!(
        status["inputs"]["policies"]["last_error"],
        Value::Null,
        "{status:#}"
    );
    assert_eq!(status["policies"]["static"], 20);
    let answer = server
        .decide(
            &user("carol"),
            &action("readProject"),
            &uid("Project", "ledger"),
        )
        .await;
    assert_answer(&answer, "Allow", &["carol-reads-ledger"], &[]);
    assert_baseline_decisions_except_carol(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_that_fails_schema_validation_keeps_the_last_good_set() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    // Parses, but `Action::"launchRocket"` is not in the schema: strict validation fails.
    write_atomic(
        &server.layout.policy("rocket.cedar"),
        "@id(\"rocket\")\npermit (principal, action == Action::\"launchRocket\", resource);\n",
    );
    let status = wait_for_error(&server, "policies", "do not validate").await;
    assert!(
        status["inputs"]["policies"]["last_error"]
            .as_str()
            .unwrap()
            .contains("rocket.cedar"),
        "{status:#}"
    );
    assert_eq!(status["generation"].as_u64().unwrap(), generation);
    assert_baseline_decisions(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_error_is_cleared_once_the_broken_file_is_removed() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    let broken = server.layout.policy("carol.cedar");
    write_atomic(&broken, BROKEN_POLICY);
    wait_for_error(&server, "policies", "carol.cedar").await;

    // Back to exactly the live policy set: nothing is failing any more.
    std::fs::remove_file(&broken).unwrap();
    let status = server
        .wait_for_status("inputs.policies.last_error to clear", RELOAD_TIMEOUT, |s| {
            s["inputs"]["policies"]["last_error"].is_null()
        })
        .await;
    assert_eq!(status["generation"].as_u64().unwrap(), generation);
    assert_baseline_decisions(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_role_template_rejects_the_grants_that_link_it() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    let roles = server.layout.policy("elevation_roles.cedar");
    let text = std::fs::read_to_string(&roles).unwrap();
    let start = text.find("// FinOps work").unwrap();
    let end = text.find("// Read-only visibility").unwrap();
    write_atomic(&roles, &format!("{}{}", &text[..start], &text[end..]));

    let status = next_generation(&server, generation).await;
    assert_eq!(status["grants"]["accepted"], 0, "{status:#}");
    assert_eq!(status["grants"]["rejected"][0]["id"], FINOPS_ALICE);
    assert_eq!(status["grants"]["rejected"][0]["reason"], "unknown_role");
    let answer = server
        .decide(
            &user("alice"),
            &action("createPaymentMethod"),
            &uid("PaymentMethod", "pm-1"),
        )
        .await;
    assert_answer(&answer, "Deny", &[], &[]);

    // Restored: the same feed applies again, without touching the feed.
    write_atomic(&roles, &text);
    let status = next_generation(&server, generation + 1).await;
    assert_eq!(status["grants"]["accepted"], 1, "{status:#}");
    assert_eq!(status["grants"]["rejected_count"], 0);
    assert_baseline_decisions(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swap_of_the_policy_directory_is_picked_up() {
    let server = TestServer::start(|l| {
        let shipped: Vec<_> = std::fs::read_dir(&l.policies)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        configmap_publish(
            &l.policies,
            "..2026_12_03_00_00_00.1",
            &shipped_files(&shipped),
        );
        write_feed(&l.grants, "1", vec![finops_alice()]);
    })
    .await;
    let generation = server.generation().await;
    assert_baseline_decisions(&server).await;

    let mut files = shipped_files(
        &std::fs::read_dir(server.layout.policies.join("..data"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>(),
    );
    files.push(("carol.cedar".into(), CAROL_READS_CHECKOUT.into()));
    configmap_publish(&server.layout.policies, "..2026_12_03_00_00_00.2", &files);

    next_generation(&server, generation).await;
    let answer = server
        .decide(
            &user("carol"),
            &action("readProject"),
            &uid("Project", "checkout"),
        )
        .await;
    assert_answer(&answer, "Allow", &["carol-reads-checkout"], &[]);
    assert_baseline_decisions_except_carol(&server).await;
}

fn shipped_files(paths: &[std::path::PathBuf]) -> Vec<(String, String)> {
    paths
        .iter()
        .filter(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect()
}

/// Publishes `files` into `dir` the way the kubelet updates a ConfigMap volume: the
/// files go into a new timestamped directory, `..data` is swapped to it by renaming a
/// fresh symlink over it, each visible name is a symlink into `..data`, and the old
/// timestamped directory is removed.
fn configmap_publish(dir: &Path, stamp: &str, files: &[(String, String)]) {
    use std::os::unix::fs::symlink;
    std::fs::create_dir_all(dir).unwrap();
    let old = std::fs::read_link(dir.join("..data")).ok();
    let stamped = dir.join(stamp);
    std::fs::create_dir(&stamped).unwrap();
    for (name, text) in files {
        std::fs::write(stamped.join(name), text).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    symlink(stamp, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (name, _) in files {
        let visible = dir.join(name);
        if std::fs::symlink_metadata(&visible).is_ok_and(|m| m.file_type().is_symlink()) {
            continue;
        }
        let _ = std::fs::remove_file(&visible);
        symlink(Path::new("..data").join(name), &visible).unwrap();
    }
    // Visible names that the new version no longer has.
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && !files.iter().any(|(n, _)| *n == name) {
            // A ConfigMap has no subdirectories (the policy tests live beside the
            // shipped policies, not in a ConfigMap).
            if entry.path().is_dir() && !entry.path().is_symlink() {
                std::fs::remove_dir_all(entry.path()).unwrap();
            } else {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).unwrap();
    }
}

// -------------------------------------------------------------------- schema

const EXPORT_ACTION: &str = r#"
// Added by a reload test.
action exportPaymentMethods in [billing] appliesTo {
  principal: [User, ApiKey],
  resource: [Workspace],
  context: RequestContext,
};
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_change_adds_an_action_that_an_existing_grant_covers() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    let export = body(
        &user("alice"),
        &action("exportPaymentMethods"),
        &uid("Workspace", "ws-1"),
    );
    let (status, answer) = server.post_json("/v1/is_authorized", &export).await;
    assert_eq!(
        status,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "{answer}"
    );
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("exportPaymentMethods"),
        "{answer}"
    );

    let schema = std::fs::read_to_string(&server.layout.schema).unwrap();
    write_atomic(&server.layout.schema, &format!("{schema}{EXPORT_ACTION}"));
    let status = next_generation(&server, generation).await;
    assert_eq!(status["inputs"]["schema"]["last_error"], Value::Null);
    // The new action is in the billing group, so the FinOps grant covers it.
    let answer = server.decide_body(&export).await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    let answer = server
        .decide(
            &user("bob"),
            &action("exportPaymentMethods"),
            &uid("Workspace", "ws-1"),
        )
        .await;
    assert_answer(&answer, "Deny", &[], &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_schema_keeps_the_last_good_version() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    let schema = std::fs::read_to_string(&server.layout.schema).unwrap();
    write_atomic(
        &server.layout.schema,
        &format!("{schema}\nentity Broken in [ {{\n"),
    );
    let status = wait_for_error(&server, "schema", "elevate.cedarschema").await;
    assert!(
        status["inputs"]["schema"]["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot parse schema"),
        "{status:#}"
    );
    assert_eq!(status["generation"].as_u64().unwrap(), generation);
    assert!(reload_errors(&server, "schema").await >= 1.0);
    assert_baseline_decisions(&server).await;

    write_atomic(&server.layout.schema, &format!("{schema}{EXPORT_ACTION}"));
    let status = next_generation(&server, generation).await;
    assert_eq!(
        status["inputs"]["schema"]["last_error"],
        Value::Null,
        "{status:#}"
    );
    let answer = server
        .decide(
            &user("alice"),
            &action("exportPaymentMethods"),
            &uid("Workspace", "ws-1"),
        )
        .await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_that_the_entities_no_longer_conform_to_is_rejected() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    let schema = std::fs::read_to_string(&server.layout.schema).unwrap();
    // Users gain a required attribute that no user in the data has.
    let changed = schema.replace(
        "  email: String,\n",
        "  email: String,\n  cost_center: String,\n",
    );
    assert_ne!(changed, schema);
    write_atomic(&server.layout.schema, &changed);
    let status = wait_for_error(&server, "schema", "entities no longer conform").await;
    assert_eq!(status["generation"].as_u64().unwrap(), generation);
    assert_baseline_decisions(&server).await;
}

// ------------------------------------------------------------------ entities

fn alice_also_in_ws2(entities: &mut Value) {
    let alice = entities
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["uid"]["type"] == "User" && e["uid"]["id"] == "alice")
        .unwrap();
    alice["attrs"]["member_of"]
        .as_array_mut()
        .unwrap()
        .push(json!({"__entity": {"type": "Workspace", "id": "ws-2"}}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entity_change_overwritten_in_place_makes_alice_a_member_of_ws2() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    let warehouse = body(
        &user("alice"),
        &action("readProject"),
        &uid("Project", "warehouse"),
    );
    assert_answer(&server.decide_body(&warehouse).await, "Deny", &[], &[]);

    let mut entities = read_json_file(&server.layout.entities);
    alice_also_in_ws2(&mut entities);
    // Truncate and write, as an editor without atomic save does.
    write_in_place(
        &server.layout.entities,
        &serde_json::to_string_pretty(&entities).unwrap(),
    );
    let status = next_generation(&server, generation).await;
    assert_eq!(
        status["inputs"]["entities"]["last_error"],
        Value::Null,
        "{status:#}"
    );

    assert_answer(
        &server.decide_body(&warehouse).await,
        "Allow",
        &["workspace-member-read"],
        &[],
    );
    // Membership is not billing: the grant still only reaches ws-1's payment methods.
    let answer = server
        .decide(
            &user("alice"),
            &action("createPaymentMethod"),
            &uid("PaymentMethod", "pm-2"),
        )
        .await;
    assert_answer(&answer, "Deny", &[], &[]);
    assert_baseline_decisions(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_entities_keep_the_last_good_version() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    let good = read_json_file(&server.layout.entities);
    let warehouse = body(
        &user("alice"),
        &action("readProject"),
        &uid("Project", "warehouse"),
    );

    // Alice in ws-2, but with an email the schema says must be a String.
    let mut bad = good.clone();
    alice_also_in_ws2(&mut bad);
    for e in bad.as_array_mut().unwrap() {
        if e["uid"]["id"] == "alice" {
            e["attrs"]["email"] = json!(42);
        }
    }
    write_json(&server.layout.entities, &bad);
    let status = wait_for_error(&server, "entities", "entities.json").await;
    assert!(
        status["inputs"]["entities"]["last_error"]
            .as_str()
            .unwrap()
            .contains("invalid entities"),
        "{status:#}"
    );
    assert_eq!(status["generation"].as_u64().unwrap(), generation);
    assert_answer(&server.decide_body(&warehouse).await, "Deny", &[], &[]);
    assert_baseline_decisions(&server).await;

    // Not JSON at all: same.
    write_atomic(&server.layout.entities, "[{\"uid\": ");
    let status = server
        .wait_for_status("a second entities failure", RELOAD_TIMEOUT, |s| {
            s["inputs"]["entities"]["failures"].as_u64().unwrap_or(0) >= 2
        })
        .await;
    assert_eq!(status["generation"].as_u64().unwrap(), generation);
    assert!(reload_errors(&server, "entities").await >= 2.0);
    assert_baseline_decisions(&server).await;

    // Fixed: alice's ws-2 membership applies.
    let mut fixed = good;
    alice_also_in_ws2(&mut fixed);
    write_json(&server.layout.entities, &fixed);
    let status = next_generation(&server, generation).await;
    assert_eq!(
        status["inputs"]["entities"]["last_error"],
        Value::Null,
        "{status:#}"
    );
    assert_answer(
        &server.decide_body(&warehouse).await,
        "Allow",
        &["workspace-member-read"],
        &[],
    );
}

// -------------------------------------------------------------------- grants

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_grant_allows_after_the_next_reload() {
    let server = TestServer::start(|_| {}).await;
    let generation = server.generation().await;
    let create = body(
        &user("alice"),
        &action("createPaymentMethod"),
        &uid("PaymentMethod", "pm-1"),
    );
    assert_answer(&server.decide_body(&create).await, "Deny", &[], &[]);

    let g = finops_alice();
    write_feed(&server.layout.grants, "2", vec![g.clone()]);
    let status = next_generation(&server, generation).await;
    assert_eq!(status["revisions"]["grants"], "2");
    assert_eq!(status["inputs"]["grants"]["revision"], "2");
    assert_eq!(status["grants"]["accepted"], 1);
    assert_eq!(status["grants"]["in_force"], 1);
    let answer = server.decide_body(&create).await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    assert_eq!(valid_until(&answer), Some(expires_at(&g)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_overwritten_in_place_is_picked_up() {
    let server = TestServer::start(|_| {}).await;
    let generation = server.generation().await;
    let text = serde_json::to_string_pretty(&feed("2", vec![finops_alice()])).unwrap();
    write_in_place(&server.layout.grants, &text);
    next_generation(&server, generation).await;
    let status = server
        .wait_for_status("grants revision 2 without error", RELOAD_TIMEOUT, |s| {
            s["revisions"]["grants"] == "2" && s["inputs"]["grants"]["last_error"].is_null()
        })
        .await;
    assert_eq!(status["grants"]["accepted"], 1);
    assert_baseline_decisions(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_grant_from_the_feed_revokes_it() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    assert_baseline_decisions(&server).await;
    let bob = grant_now(
        "g-orguser-bob",
        &user("bob"),
        "OrganizationUser",
        &uid("Organization", "acme"),
    );
    write_feed(&server.layout.grants, "2", vec![bob]);
    let status = next_generation(&server, generation).await;
    assert_eq!(status["grants"]["accepted"], 1);
    let answer = server
        .decide(
            &user("alice"),
            &action("createPaymentMethod"),
            &uid("PaymentMethod", "pm-1"),
        )
        .await;
    assert_answer(&answer, "Deny", &[], &[]);
    // The workspace role is untouched by revocation; the other grant applies.
    let answer = server
        .decide(
            &user("alice"),
            &action("readProject"),
            &uid("Project", "checkout"),
        )
        .await;
    assert_answer(&answer, "Allow", &["workspace-member-read"], &[]);
    let answer = server
        .decide(
            &user("bob"),
            &action("readProject"),
            &uid("Project", "warehouse"),
        )
        .await;
    assert_answer(&answer, "Allow", &["g-orguser-bob"], &["g-orguser-bob"]);

    // An empty feed revokes everything.
    write_feed(&server.layout.grants, "3", vec![]);
    let status = next_generation(&server, generation + 1).await;
    assert_eq!(status["grants"]["accepted"], 0);
    let answer = server
        .decide(
            &user("bob"),
            &action("readProject"),
            &uid("Project", "warehouse"),
        )
        .await;
    assert_answer(&answer, "Deny", &[], &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparsable_feed_keeps_the_last_good_grants() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    for (i, text) in [
        "{\"revision\": \"2\", \"grants\": [".to_owned(),
        // Valid JSON, wrong shape: `grants` is not an array.
        json!({"revision": "3", "grants": {"g": 1}}).to_string(),
        // No revision.
        json!({"grants": []}).to_string(),
    ]
    .into_iter()
    .enumerate()
    {
        write_atomic(&server.layout.grants, &text);
        let failures = i as u64 + 1;
        let status = server
            .wait_for_status(
                &format!("{failures} grant feed failures"),
                RELOAD_TIMEOUT,
                |s| s["inputs"]["grants"]["failures"].as_u64().unwrap_or(0) >= failures,
            )
            .await;
        let error = status["inputs"]["grants"]["last_error"].as_str().unwrap();
        assert!(error.contains("grants.json"), "{error}");
        assert_eq!(
            status["generation"].as_u64().unwrap(),
            generation,
            "{status:#}"
        );
        assert_eq!(status["revisions"]["grants"], "1");
        assert_eq!(status["grants"]["accepted"], 1);
        assert_baseline_decisions(&server).await;
    }
    assert!(reload_errors(&server, "grants").await >= 3.0);

    write_feed(&server.layout.grants, "4", vec![]);
    let status = next_generation(&server, generation).await;
    assert_eq!(
        status["inputs"]["grants"]["last_error"],
        Value::Null,
        "{status:#}"
    );
    let answer = server
        .decide(
            &user("alice"),
            &action("createPaymentMethod"),
            &uid("PaymentMethod", "pm-1"),
        )
        .await;
    assert_answer(&answer, "Deny", &[], &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_error_is_cleared_once_the_last_good_feed_is_back() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    let good = std::fs::read_to_string(&server.layout.grants).unwrap();
    write_atomic(&server.layout.grants, "{ not json");
    wait_for_error(&server, "grants", "grants.json").await;

    // The publisher rolls back to the document that is live: nothing is failing.
    write_atomic(&server.layout.grants, &good);
    let status = server
        .wait_for_status("inputs.grants.last_error to clear", RELOAD_TIMEOUT, |s| {
            s["inputs"]["grants"]["last_error"].is_null()
        })
        .await;
    assert_eq!(status["generation"].as_u64().unwrap(), generation);
    assert_baseline_decisions(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_grant_is_rejected_alone_and_the_others_apply() {
    let server = TestServer::start(|_| {}).await;
    let generation = server.generation().await;
    let ws1 = uid("Workspace", "ws-1");
    let acme = uid("Organization", "acme");
    let mut malformed = grant_now("g-malformed", &user("dave"), "FinOpsManager", &ws1);
    malformed.as_object_mut().unwrap().remove("expires_at");
    let grants = vec![
        finops_alice(),
        grant_now("g-unknown-role", &user("bob"), "SuperUser", &ws1),
        // OrganizationUser may only be scoped to the Organization.
        grant_now("g-scope-type", &user("carol"), "OrganizationUser", &ws1),
        grant(
            "g-window",
            &user("dave"),
            "FinOpsManager",
            &ws1,
            minutes(10),
            minutes(-10),
        ),
        // FinOpsManager allows at most PT4H.
        grant(
            "g-too-long",
            &user("frank"),
            "FinOpsManager",
            &ws1,
            minutes(-1),
            hours(5),
        ),
        // Same id as alice's grant, for someone else.
        grant_now(FINOPS_ALICE, &user("carol"), "FinOpsManager", &ws1),
        grant_now(
            "g-principal-type",
            &uid("Robot", "r2"),
            "FinOpsManager",
            &ws1,
        ),
        malformed,
        grant_now("g-orguser-bob", &user("bob"), "OrganizationUser", &acme),
        grant_now("g-finops-bb", &api_key("bb-ws1"), "FinOpsManager", &ws1),
    ];
    write_feed(&server.layout.grants, "2", grants);
    let status = next_generation(&server, generation).await;
    assert_eq!(
        status["inputs"]["grants"]["last_error"],
        Value::Null,
        "{status:#}"
    );
    assert_eq!(status["grants"]["accepted"], 3, "{status:#}");
    assert_eq!(status["grants"]["rejected_count"], 7, "{status:#}");
    let rejected: Vec<(Value, usize, String)> = status["grants"]["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
            (
                r["id"].clone(),
                r["index"].as_u64().unwrap() as usize,
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(Value, usize, String)> = [
        ("g-unknown-role", 1, "unknown_role"),
        ("g-scope-type", 2, "scope_type"),
        ("g-window", 3, "window"),
        ("g-too-long", 4, "too_long"),
        (FINOPS_ALICE, 5, "duplicate_id"),
        ("g-principal-type", 6, "principal_type"),
        ("g-malformed", 7, "malformed"),
    ]
    .into_iter()
    .map(|(id, index, reason)| (json!(id), index, reason.to_owned()))
    .collect();
    assert_eq!(rejected, expected, "{status:#}");
    let messages: Vec<&str> = status["grants"]["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["message"].as_str().unwrap())
        .collect();
    assert!(messages[0].contains("SuperUser"), "{messages:?}");
    assert!(
        messages[3].contains("PT4H") || messages[3].contains("4h"),
        "{messages:?}"
    );

    let text = server.metrics().await;
    for reason in [
        "unknown_role",
        "scope_type",
        "window",
        "too_long",
        "duplicate_id",
        "principal_type",
        "malformed",
    ] {
        assert_eq!(
            metric_value(
                &text,
                &format!("elevate_grants_rejected_total{{reason=\"{reason}\"}}")
            ),
            1.0,
            "{reason}"
        );
    }

    // The good ones apply.
    let pm1 = uid("PaymentMethod", "pm-1");
    let create = action("createPaymentMethod");
    assert_answer(
        &server.decide(&user("alice"), &create, &pm1).await,
        "Allow",
        &[FINOPS_ALICE],
        &[FINOPS_ALICE],
    );
    assert_answer(
        &server.decide(&api_key("bb-ws1"), &create, &pm1).await,
        "Allow",
        &["g-finops-bb"],
        &["g-finops-bb"],
    );
    assert_answer(
        &server
            .decide(
                &user("bob"),
                &action("readProject"),
                &uid("Project", "warehouse"),
            )
            .await,
        "Allow",
        &["g-orguser-bob"],
        &["g-orguser-bob"],
    );
    // The rejected ones do not.
    for principal in ["carol", "dave", "frank"] {
        assert_answer(
            &server.decide(&user(principal), &create, &pm1).await,
            "Deny",
            &[],
            &[],
        );
    }
    assert_answer(
        &server
            .decide(
                &user("carol"),
                &action("readProject"),
                &uid("Project", "checkout"),
            )
            .await,
        "Deny",
        &[],
        &[],
    );
    // Bob's rejected SuperUser grant does not add to his workspace role: still no create.
    assert_answer(
        &server.decide(&user("bob"), &create, &pm1).await,
        "Deny",
        &[],
        &[],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swap_of_the_grants_file_is_picked_up() {
    let feed_v1 = serde_json::to_string_pretty(&feed("cm-1", vec![finops_alice()])).unwrap();
    let server = TestServer::start(|l| {
        let dir = l.grants.parent().unwrap();
        std::fs::remove_file(&l.grants).unwrap();
        configmap_publish(
            dir,
            "..2026_12_03_00_00_00.1",
            &[("grants.json".into(), feed_v1)],
        );
        assert!(
            std::fs::symlink_metadata(&l.grants)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    })
    .await;
    let generation = server.generation().await;
    assert_eq!(server.status().await["revisions"]["grants"], "cm-1");
    assert_baseline_decisions(&server).await;

    let carol = grant_now(
        "g-finops-carol",
        &user("carol"),
        "FinOpsManager",
        &uid("Workspace", "ws-1"),
    );
    let feed_v2 = serde_json::to_string_pretty(&feed("cm-2", vec![carol])).unwrap();
    configmap_publish(
        server.layout.grants.parent().unwrap(),
        "..2026_12_03_00_00_00.2",
        &[("grants.json".into(), feed_v2)],
    );
    let status = next_generation(&server, generation).await;
    assert_eq!(status["revisions"]["grants"], "cm-2", "{status:#}");
    let pm1 = uid("PaymentMethod", "pm-1");
    let create = action("createPaymentMethod");
    assert_answer(
        &server.decide(&user("alice"), &create, &pm1).await,
        "Deny",
        &[],
        &[],
    );
    assert_answer(
        &server.decide(&user("carol"), &create, &pm1).await,
        "Allow",
        &["g-finops-carol"],
        &["g-finops-carol"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_is_not_starved_by_a_steady_stream_of_unrelated_file_events() {
    // The shipped default debounce; the feed directory also holds a file that another
    // process appends to all the time (a decision log next to the feed, say).
    let server = TestServer::start_with(
        |l| write_feed(&l.grants, "1", vec![]),
        |c| c.reload.debounce = std::time::Duration::from_millis(250),
    )
    .await;
    let generation = server.generation().await;
    let noisy = server.layout.grants.with_file_name("noise.log");
    let stop = tokio_util::sync::CancellationToken::new();
    let appender = {
        let stop = stop.clone();
        let noisy = noisy.clone();
        tokio::spawn(async move {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(noisy)
                .unwrap();
            while !stop.is_cancelled() {
                file.write_all(b"noise\n").unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
    };

    write_feed(&server.layout.grants, "2", vec![finops_alice()]);
    let result = tokio::time::timeout(RELOAD_TIMEOUT, async {
        loop {
            let status = server.status().await;
            if status["generation"].as_u64().unwrap() > generation {
                return status;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    })
    .await;
    stop.cancel();
    appender.await.unwrap();
    let status = result.unwrap_or_else(|_| {
        panic!("no reload within {RELOAD_TIMEOUT:?} while an unrelated file in a watched directory kept changing")
    });
    assert_eq!(status["revisions"]["grants"], "2");
    assert_baseline_decisions(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editor_swap_and_backup_files_in_the_policy_dir_are_ignored() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    let written = jiff::Timestamp::now();
    for name in [
        ".carol.cedar.swp",
        "carol.cedar~",
        "#carol.cedar#",
        "carol.cedar.bak",
    ] {
        write_in_place(&server.layout.policy(name), CAROL_READS_CHECKOUT);
    }
    // Wait until a reload attempt has looked at the directory after the writes.
    let status = server
        .wait_for_status("a reload attempt after the writes", RELOAD_TIMEOUT, |s| {
            s["inputs"]["policies"]["last_attempt"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_some_and(|t| t > written)
        })
        .await;
    assert_eq!(
        status["generation"].as_u64().unwrap(),
        generation,
        "{status:#}"
    );
    assert_eq!(
        status["inputs"]["policies"]["last_error"],
        Value::Null,
        "{status:#}"
    );
    assert_baseline_decisions(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_and_entities_changed_together_apply_once_both_files_are_written() {
    let server = server_with_alice_grant().await;
    let generation = server.generation().await;
    let schema = std::fs::read_to_string(&server.layout.schema).unwrap();
    let new_schema = schema.replace(
        "  email: String,\n",
        "  email: String,\n  cost_center: String,\n",
    );
    let mut entities = read_json_file(&server.layout.entities);
    for e in entities.as_array_mut().unwrap() {
        if e["uid"]["type"] == "User" {
            e["attrs"]["cost_center"] = json!("cc-1");
        }
    }
    alice_also_in_ws2(&mut entities);

    // The schema lands first: the old entities do not conform, so it waits.
    write_atomic(&server.layout.schema, &new_schema);
    wait_for_error(&server, "schema", "entities no longer conform").await;
    assert_eq!(server.generation().await, generation);
    // Then the entities: both apply in one new generation.
    write_json(&server.layout.entities, &entities);
    let status = next_generation(&server, generation).await;
    assert_eq!(
        status["inputs"]["schema"]["last_error"],
        Value::Null,
        "{status:#}"
    );
    assert_eq!(
        status["inputs"]["entities"]["last_error"],
        Value::Null,
        "{status:#}"
    );
    let answer = server
        .decide(
            &user("alice"),
            &action("readProject"),
            &uid("Project", "warehouse"),
        )
        .await;
    assert_answer(&answer, "Allow", &["workspace-member-read"], &[]);
    assert_baseline_decisions(&server).await;
}

// ------------------------------------------------------------------ reloader priority

/// Nice values of this process's threads named `name` (from /proc), and the nice
/// value of the calling thread.
fn thread_nices(name: &str) -> (Vec<i32>, i32) {
    let nice_of = |stat: &str| -> i32 {
        let rest = stat.rsplit_once(") ").unwrap().1;
        // Field 19 of stat is the nice value; `rest` starts at field 3.
        rest.split_whitespace().nth(16).unwrap().parse().unwrap()
    };
    let mut nices = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue;
        };
        if comm.trim_end() == name {
            nices.push(nice_of(&stat));
        }
    }
    let own = nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
    (nices, own)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_run_on_a_reloader_thread_niced_below_the_request_threads() {
    let server = TestServer::start(|_| {}).await;
    let generation = server.generation().await;
    let (nices, own) = thread_nices("elevate-reload");
    let expected = (own + elevate::priority::DEFAULT_RELOAD_NICE).min(19);
    assert!(nices.contains(&expected), "{nices:?}, expected {expected}");
    // The servers of this test binary run with the default step, or with 0.
    assert!(
        nices.iter().all(|n| *n == expected || *n == own),
        "{nices:?}"
    );
    let status = server.status().await;
    assert_eq!(
        status["reloader"],
        json!({"state": "applied", "nice": expected}),
        "{status}"
    );

    // A reload on that thread goes live as before.
    write_feed(&server.layout.grants, "2", vec![finops_alice()]);
    let status = next_generation(&server, generation).await;
    assert_eq!(status["grants"]["accepted"], 1);
    let create = body(
        &user("alice"),
        &action("createPaymentMethod"),
        &uid("PaymentMethod", "pm-1"),
    );
    let answer = server.decide_body(&create).await;
    assert_answer(&answer, "Allow", &[FINOPS_ALICE], &[FINOPS_ALICE]);
    // Request threads keep their priority.
    let (workers, _) = thread_nices("tokio-runtime-w");
    assert!(workers.iter().all(|n| *n == own), "{workers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_nice_zero_leaves_the_reloader_at_the_request_threads_priority() {
    let server = TestServer::start_with(|_| {}, |config| config.reload.nice = 0).await;
    let status = server.status().await;
    assert_eq!(status["reloader"], json!({"state": "disabled"}), "{status}");
}
