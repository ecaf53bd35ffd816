//! Every refusal: by policy (naming the forbid, or saying no policy permits), by the
//! backstops in code, by state, and of malformed input. A refused command records
//! nothing.

use super::*;

/// Runs `command` and asserts that it recorded nothing.
#[track_caller]
fn records_nothing<T>(f: &mut Fixture, command: impl FnOnce(&mut Workflow) -> T) -> T {
    let before = f.wf.last_seq();
    let out = command(&mut f.wf);
    assert_eq!(
        f.wf.last_seq(),
        before,
        "a refused command recorded an event"
    );
    out
}

#[test]
fn self_approval_is_forbidden_by_the_no_self_approval_policy() {
    let mut f = Fixture::new();
    // carol is an approver for FinOps, but not of her own request.
    let id =
        f.wf.request(&user("carol"), finops(ws(1), hours(1)), t(0))
            .unwrap()
            .id;
    let result = records_nothing(&mut f, |wf| wf.approve(&user("carol"), &id, None, t(1)));
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden);
    assert_eq!(
        err.to_string(),
        "`User::\"carol\"` may not approve request `r-1`: forbidden by `no-self-approval`"
    );
    assert_eq!(f.state(&id, t(1)), State::Pending);
}

#[test]
fn approving_a_request_made_on_your_behalf_is_self_approval() {
    let mut f = Fixture::new();
    let mut s = finops(ws(1), hours(1));
    s.on_behalf_of = Some("User::\"bob\"".into());
    let id = f.wf.request(&key("bb-ws1"), s, t(0)).unwrap().id;
    assert_eq!(
        forbidden_by(f.wf.approve(&user("bob"), &id, None, t(1))),
        ["no-self-approval"]
    );
    // Someone else may.
    f.wf.approve(&user("carol"), &id, None, t(2)).unwrap();
}

#[test]
fn an_approver_for_one_role_cannot_approve_another() {
    let mut f = Fixture::new();
    // frank approves organization roles, not FinOps.
    let id = f.alice_finops(t(0));
    let message = records_nothing(&mut f, |wf| {
        not_permitted(wf.approve(&user("frank"), &id, None, t(1)))
    });
    assert_eq!(
        message,
        "`User::\"frank\"` may not approve request `r-1`: no policy permits it"
    );
    not_permitted(f.wf.deny(&user("frank"), &id, None, t(1)));
    // bob owns ws-1, which makes him a FinOps approver there, not an org-role one.
    let admin =
        f.wf.request(
            &user("alice"),
            spec("OrganizationUser", org(), hours(1)),
            t(2),
        )
        .unwrap()
        .id;
    not_permitted(f.wf.approve(&user("bob"), &admin, None, t(3)));
    // Neither dave (no approver at all) nor a key approves anything.
    not_permitted(f.wf.approve(&user("dave"), &admin, None, t(3)));
    not_permitted(f.wf.approve(&key("bb-ws1"), &id, None, t(3)));
}

#[test]
fn a_duration_over_the_role_maximum_is_forbidden() {
    let mut f = Fixture::new();
    // FinOpsManager: @max_duration("PT4H").
    let too_long = finops(ws(1), hours(4) + SignedDuration::from_secs(1));
    assert_eq!(
        records_nothing(&mut f, |wf| forbidden_by(wf.request(
            &user("alice"),
            too_long,
            t(0)
        ))),
        ["duration-over-role-maximum"]
    );
    // Exactly the maximum is fine.
    f.wf.request(&user("alice"), finops(ws(1), hours(4)), t(0))
        .unwrap();
    // OrganizationAdmin: @max_duration("PT2H").
    assert_eq!(
        forbidden_by(f.wf.request(
            &user("alice"),
            spec("OrganizationAdmin", org(), hours(3)),
            t(0)
        )),
        ["duration-over-role-maximum"]
    );
}

#[test]
fn an_api_key_cannot_request_outside_its_own_workspace() {
    let mut f = Fixture::new();
    for scope in [ws(2), org()] {
        let result = records_nothing(&mut f, |wf| {
            wf.request(&key("bb-ws1"), finops(scope.clone(), hours(1)), t(0))
        });
        let err = result.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "`ApiKey::\"bb-ws1\"` may not request `FinOpsManager` on `{scope}`: forbidden by `apikey-outside-own-workspace`"
            )
        );
    }
    // Its own workspace is fine.
    f.wf.request(&key("bb-ws1"), finops(ws(1), hours(1)), t(0))
        .unwrap();
}

#[test]
fn a_suspended_user_can_do_nothing() {
    let mut f = Fixture::new();
    assert_eq!(
        forbidden_by(f.wf.request(&user("erin"), finops(ws(1), hours(1)), t(0))),
        ["suspended-principal"]
    );
}

#[test]
fn only_the_requester_cancels() {
    let mut f = Fixture::new();
    let id = f.alice_finops(t(0));
    for actor in [user("carol"), user("bob"), key("bb-ws1")] {
        not_permitted(records_nothing(&mut f, |wf| {
            wf.cancel(&actor, &id, None, t(1))
        }));
    }
    assert_eq!(f.state(&id, t(1)), State::Pending);
}

#[test]
fn only_the_grantee_relinquishes_and_only_approvers_or_admins_revoke() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0));
    not_permitted(f.wf.relinquish(&user("carol"), &id, None, t(1)));
    not_permitted(f.wf.revoke(&user("alice"), &id, None, t(1)));
    not_permitted(f.wf.revoke(&user("dave"), &id, None, t(1)));
    assert_eq!(f.state(&id, t(1)), State::Approved);
}

#[test]
fn a_finished_request_refuses_every_command() {
    let mut f = Fixture::new();
    let denied = f.alice_finops(t(0));
    f.wf.deny(&user("carol"), &denied, None, t(1)).unwrap();
    let cancelled = f.alice_finops(t(1));
    f.wf.cancel(&user("alice"), &cancelled, None, t(1)).unwrap();
    let revoked = f.alice_granted(t(1));
    f.wf.revoke(&user("carol"), &revoked, None, t(2)).unwrap();
    let relinquished = f.alice_granted(t(2));
    f.wf.relinquish(&user("alice"), &relinquished, None, t(3))
        .unwrap();
    let expired = f.alice_granted(t(3)); // until t(123)
    let lapsed = f.alice_finops(t(4)); // decide_by t(4) + 24 h
    let now = t(4) + DEFAULT_REQUEST_TTL;

    let cases = [
        (&denied, State::Denied),
        (&cancelled, State::Cancelled),
        (&revoked, State::Revoked),
        (&relinquished, State::Relinquished),
        (&expired, State::Expired),
        (&lapsed, State::Lapsed),
    ];
    for (id, state) in cases {
        let carol = user("carol");
        let alice = user("alice");
        let results = [
            f.wf.approve(&carol, id, None, now).map(|_| ()),
            f.wf.deny(&carol, id, None, now).map(|_| ()),
            f.wf.cancel(&alice, id, None, now).map(|_| ()),
            f.wf.revoke(&carol, id, None, now).map(|_| ()),
            f.wf.relinquish(&alice, id, None, now).map(|_| ()),
            f.wf.extend(&alice, id, more(hours(1)), now).map(|_| ()),
        ];
        for result in results {
            assert_eq!(wrong_state(result), state, "{id}");
        }
    }
    let message = refused(
        f.wf.approve(&user("carol"), &denied, None, now),
        ErrorKind::Conflict,
    );
    assert_eq!(message, "cannot approve request `r-1`: it is denied");
}

#[test]
fn commands_in_the_wrong_live_state_are_refused() {
    let mut f = Fixture::new();
    let pending = f.alice_finops(t(0));
    assert_eq!(
        wrong_state(f.wf.revoke(&user("carol"), &pending, None, t(1))),
        State::Pending
    );
    assert_eq!(
        wrong_state(f.wf.relinquish(&user("alice"), &pending, None, t(1))),
        State::Pending
    );
    let granted = f.alice_granted(t(1));
    assert_eq!(
        wrong_state(f.wf.approve(&user("bob"), &granted, None, t(2))),
        State::Approved
    );
    assert_eq!(
        wrong_state(f.wf.deny(&user("carol"), &granted, None, t(2))),
        State::Approved
    );
    assert_eq!(
        wrong_state(f.wf.cancel(&user("alice"), &granted, None, t(2))),
        State::Approved
    );
}

#[test]
fn unknown_requests_are_not_found() {
    let mut f = Fixture::new();
    let message = refused(
        f.wf.approve(&user("carol"), "r-9", None, t(0)),
        ErrorKind::NotFound,
    );
    assert_eq!(message, "no elevation request `r-9`");
    // A grant id finds only a request that has that grant.
    let id = f.alice_finops(t(0));
    assert_eq!(id, "r-1");
    refused(
        f.wf.revoke(&user("carol"), "g-1", None, t(0)),
        ErrorKind::NotFound,
    );
    assert!(f.wf.get("g-1").is_none());
}

#[test]
fn malformed_requests_are_invalid() {
    let mut f = Fixture::new();
    let alice = user("alice");
    let mut cases: Vec<(RequestSpec, &str)> = vec![
        (
            spec("GodMode", ws(1), hours(1)),
            "role `GodMode` is not an elevation template in the policies",
        ),
        (
            spec("OrganizationUser", ws(1), hours(1)),
            "role `OrganizationUser` cannot be scoped to `Workspace::\"ws-1\"`",
        ),
        (
            finops(ws(9), hours(1)),
            "`Workspace::\"ws-9\"` is not in the entity data",
        ),
        (
            finops(ws(1), SignedDuration::ZERO),
            "a duration must be a positive whole number of seconds, not 0s",
        ),
        (
            finops(ws(1), SignedDuration::from_millis(1500)),
            "a duration must be a positive whole number of seconds, not 1s 500ms",
        ),
    ];
    let mut s = finops(ws(1), hours(1));
    s.reason = "  ".into();
    cases.push((s, "`reason` is empty"));
    let mut s = finops(ws(1), hours(1));
    s.ticket = Some("x".repeat(MAX_TEXT_BYTES + 1));
    cases.push((s, "`ticket` is longer than 4096 bytes"));
    let mut s = finops(ws(1), hours(1));
    s.not_before = Some(Timestamp::MAX);
    cases.push((s, "a grant starting at"));
    for (s, expected) in cases {
        let message = refused(f.wf.request(&alice, s, t(0)), ErrorKind::Invalid);
        assert!(message.starts_with(expected), "{message}");
    }
    let message = refused(
        f.wf.request(&user("mallory"), finops(ws(1), hours(1)), t(0)),
        ErrorKind::Invalid,
    );
    assert_eq!(message, "`User::\"mallory\"` is not in the entity data");
    assert_eq!(f.wf.last_seq(), 0);
}

#[test]
fn an_actor_the_schema_does_not_know_is_refused_by_cedar() {
    let mut f = Fixture::new();
    let id = f.alice_finops(t(0));
    // Present in the entity data (a Workspace), but no principal of any workflow action.
    let message = refused(f.wf.approve(&ws(1), &id, None, t(1)), ErrorKind::Invalid);
    assert!(
        message.starts_with("cannot ask Cedar whether `Workspace::\"ws-1\"` may approve"),
        "{message}"
    );
}

// ---------------------------------------------------------------- backstops

/// Workflow policies that permit everything and forbid nothing: the code must still
/// refuse what the shipped forbids refuse.
const PERMIT_ALL: &str = r#"
@id("anything-goes")
permit (principal, action in [
  Action::"requestElevation", Action::"approveElevation", Action::"denyElevation",
  Action::"revokeElevation", Action::"cancelElevation", Action::"relinquishElevation"
], resource is ElevationRequest);
"#;

#[test]
fn without_the_forbids_the_code_still_refuses_self_approval_repeats_and_overlong_grants() {
    let mut f = Fixture::with(shipped_with_workflow(PERMIT_ALL), Config::default());
    let id = f.alice_finops(t(0));
    let message = refused(
        f.wf.approve(&user("alice"), &id, None, t(1)),
        ErrorKind::Forbidden,
    );
    assert_eq!(
        message,
        "`User::\"alice\"` may not approve request `r-1`: nobody approves their own request"
    );
    let too_long = f.wf.request(&user("alice"), finops(ws(1), hours(5)), t(1));
    assert!(
        matches!(too_long, Err(WorkflowError::TooLong { .. })),
        "{too_long:?}"
    );
    let admin =
        f.wf.request(
            &user("alice"),
            spec("OrganizationAdmin", org(), hours(1)),
            t(1),
        )
        .unwrap()
        .id;
    f.wf.approve(&user("dave"), &admin, None, t(2)).unwrap();
    assert!(matches!(
        f.wf.approve(&user("dave"), &admin, None, t(3)),
        Err(WorkflowError::RepeatApproval { .. })
    ));
    let in_ws1 = f.alice_finops(t(3));
    assert!(matches!(
        f.wf.approve(&key("bb-ws1"), &in_ws1, None, t(3)),
        Err(WorkflowError::NotAPerson { .. })
    ));
    // The quorum still counts two distinct people.
    assert_eq!(f.state(&admin, t(3)), State::Pending);
    f.wf.approve(&user("bob"), &admin, None, t(4)).unwrap();
    assert_eq!(f.state(&admin, t(4)), State::Approved);
}

#[test]
fn with_no_workflow_policy_nothing_is_permitted() {
    let mut f = Fixture::with(shipped_with_workflow("// nothing\n"), Config::default());
    let message = not_permitted(f.wf.request(&user("alice"), finops(ws(1), hours(1)), t(0)));
    assert_eq!(
        message,
        "`User::\"alice\"` may not request `FinOpsManager` on `Workspace::\"ws-1\"`: no policy permits it"
    );
}

#[test]
fn a_role_removed_after_the_request_cannot_be_approved_but_can_be_denied() {
    let mut f = Fixture::new();
    let a = f.alice_finops(t(0));
    let b = f.alice_finops(t(0));
    let c = f.alice_granted(t(0));
    // The same inputs, without the FinOpsManager template.
    let roles = std::fs::read_to_string(repo("policies/elevation_roles.cedar")).unwrap();
    let cut = roles.find("// Read-only visibility").unwrap();
    let mut files: Vec<SourceFile> = [
        "policies/guardrails.cedar",
        "policies/workspace_roles.cedar",
        "policies/workflow.cedar",
    ]
    .iter()
    .map(|p| SourceFile::load(&repo(p)).unwrap())
    .collect();
    files.push(SourceFile {
        path: repo("policies/elevation_roles.cedar"),
        text: roles[cut..].to_owned(),
    });
    let raw = RawInputs {
        policies: files,
        schema: Some(SourceFile::load(&repo("schema/elevate.cedarschema")).unwrap()),
        entities: Some(SourceFile::load(&repo("deploy/local/entities.json")).unwrap()),
        feed: None,
        feed_hash: None,
    };
    f.wf.set_snapshot(Arc::new(Snapshot::build(&raw, Validation::Strict).unwrap()));
    let message = refused(
        f.wf.approve(&user("carol"), &a, None, t(1)),
        ErrorKind::Invalid,
    );
    assert_eq!(
        message,
        "role `FinOpsManager` is not an elevation template in the policies"
    );
    f.wf.deny(&user("carol"), &b, None, t(1)).unwrap();
    f.wf.revoke(&user("carol"), &c, None, t(1)).unwrap();
}

#[test]
fn error_kinds_cover_every_refusal_class() {
    let cases = [
        (
            WorkflowError::NotFound { id: "r-1".into() },
            ErrorKind::NotFound,
        ),
        (
            WorkflowError::AlreadyExtended {
                id: "r-1".into(),
                by: "r-2".into(),
            },
            ErrorKind::Conflict,
        ),
        (
            WorkflowError::GrantIdTaken { id: "g-1".into() },
            ErrorKind::Internal,
        ),
        (
            WorkflowError::UnknownEntity { uid: "x".into() },
            ErrorKind::Invalid,
        ),
    ];
    for (err, kind) in cases {
        assert_eq!(err.kind(), kind, "{err}");
    }
}
