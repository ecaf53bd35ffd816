//! Every transition of the state machine, and what each one records.

use super::*;

#[test]
fn a_request_is_pending_with_its_facts_and_no_grant() {
    let mut f = Fixture::new();
    let e =
        f.wf.request(&user("alice"), finops(ws(1), hours(2)), t(0))
            .unwrap();
    assert_eq!(e.id, "r-1");
    assert_eq!(e.principal, user("alice"));
    assert_eq!((e.role.as_str(), &e.scope), ("FinOpsManager", &ws(1)));
    assert_eq!(e.duration, hours(2));
    assert_eq!(e.ticket.as_deref(), Some("OPS-9"));
    assert_eq!(e.requested_at, t(0));
    assert_eq!(e.decide_by, t(0) + DEFAULT_REQUEST_TTL);
    assert_eq!(e.approvals_required, 1);
    assert_eq!(e.state(t(0)), State::Pending);
    assert!(e.grant.is_none() && e.approvals.is_empty());
    assert_eq!(f.wf.feed(t(0))["grants"], json!([]));

    let events = f.events();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (
            event.kind.as_str(),
            event.actor.as_str(),
            event.request_id.as_str()
        ),
        ("requested", "User::\"alice\"", "r-1")
    );
    assert_eq!(
        event.data,
        json!({
            "principal": "User::\"alice\"", "role": "FinOpsManager", "scope": "Workspace::\"ws-1\"",
            "duration_seconds": 7200, "reason": "fix the payment method", "ticket": "OPS-9",
            "decide_by": "2026-12-04T09:00:00Z", "approvals_required": 1,
        })
    );
}

#[test]
fn one_approval_by_a_finops_approver_grants_from_that_moment() {
    let mut f = Fixture::new();
    let id = f.alice_finops(t(0));
    let e =
        f.wf.approve(&user("carol"), &id, Some("ok".into()), t(10))
            .unwrap();
    assert_eq!(e.state(t(10)), State::Approved);
    let grant = e.grant.clone().unwrap();
    assert_eq!(
        grant,
        GrantWindow {
            id: "g-1".into(),
            not_before: t(10),
            expires_at: t(130)
        }
    );
    assert!(e.in_force(t(10)));
    assert_eq!(e.approvals.len(), 1);
    assert_eq!(e.approvals[0].by, user("carol"));
    let last = f.events().pop().unwrap();
    assert_eq!(last.kind, "approved");
    assert_eq!(
        last.data,
        json!({"grant_id": "g-1", "not_before": "2026-12-03T09:10:00Z",
               "expires_at": "2026-12-03T11:10:00Z", "approvals_required": 1, "comment": "ok"})
    );
    // The grant id finds the request too.
    assert_eq!(f.wf.get("g-1").unwrap().id, "r-1");
}

#[test]
fn organization_admin_is_granted_only_at_the_second_distinct_approval() {
    let mut f = Fixture::new();
    let id =
        f.wf.request(
            &user("alice"),
            spec("OrganizationAdmin", org(), hours(1)),
            t(0),
        )
        .unwrap()
        .id;
    let after_one = f.wf.approve(&user("carol"), &id, None, t(5)).unwrap();
    assert_eq!(after_one.state(t(5)), State::Pending);
    assert!(after_one.grant.is_none());
    assert_eq!(f.wf.feed(t(5))["grants"], json!([]));
    assert_eq!(f.events().pop().unwrap().kind, "approval");

    // The same approver again adds nothing: refused, and nothing is recorded.
    let seq = f.wf.last_seq();
    assert_eq!(
        forbidden_by(f.wf.approve(&user("carol"), &id, None, t(6))),
        ["no-repeat-approval"]
    );
    assert_eq!(f.wf.last_seq(), seq);
    assert_eq!(f.state(&id, t(6)), State::Pending);

    let e = f.wf.approve(&user("frank"), &id, None, t(20)).unwrap();
    assert_eq!(e.state(t(20)), State::Approved);
    let grant = e.grant.clone().unwrap();
    assert_eq!((grant.not_before, grant.expires_at), (t(20), t(80)));
    let feed = f.wf.feed(t(20));
    assert_eq!(
        feed["grants"][0]["approved_by"],
        json!(["User::\"carol\"", "User::\"frank\""])
    );
}

#[test]
fn a_grant_starts_at_not_before_when_approved_earlier() {
    let mut f = Fixture::new();
    let mut s = finops(ws(1), hours(1));
    s.not_before = Some(t(120));
    let id = f.wf.request(&user("alice"), s.clone(), t(0)).unwrap().id;
    let e = f.wf.approve(&user("carol"), &id, None, t(30)).unwrap();
    let grant = e.grant.clone().unwrap();
    assert_eq!((grant.not_before, grant.expires_at), (t(120), t(180)));
    // Approved but not yet in force: in the feed already.
    assert_eq!(e.state(t(30)), State::Approved);
    assert!(!e.in_force(t(120) - ns(1)));
    assert!(e.in_force(t(120)));
    assert_eq!(
        f.wf.feed(t(30))["grants"][0]["not_before"],
        "2026-12-03T11:00:00Z"
    );

    // A not_before already past when approved: the grant starts at the approval.
    let id = f.wf.request(&user("alice"), s, t(0)).unwrap().id;
    let e = f.wf.approve(&user("carol"), &id, None, t(150)).unwrap();
    let grant = e.grant.clone().unwrap();
    assert_eq!((grant.not_before, grant.expires_at), (t(150), t(210)));
}

#[test]
fn an_approver_denies_a_pending_request() {
    let mut f = Fixture::new();
    let id = f.alice_finops(t(0));
    let e =
        f.wf.deny(
            &user("carol"),
            &id,
            Some("use the ticket flow".into()),
            t(1),
        )
        .unwrap();
    assert_eq!(e.state(t(1)), State::Denied);
    let ended = e.ended.unwrap();
    assert_eq!(
        (ended.by.as_str(), ended.at, ended.comment.as_deref()),
        ("User::\"carol\"", t(1), Some("use the ticket flow"))
    );
    assert_eq!(f.events().pop().unwrap().kind, "denied");
}

#[test]
fn the_requester_cancels_a_pending_request() {
    let mut f = Fixture::new();
    let id = f.alice_finops(t(0));
    let e = f.wf.cancel(&user("alice"), &id, None, t(1)).unwrap();
    assert_eq!(e.state(t(1)), State::Cancelled);
    assert_eq!(f.events().pop().unwrap().kind, "cancelled");
}

#[test]
fn a_partly_approved_request_can_still_be_cancelled_or_denied() {
    let mut f = Fixture::new();
    let admin = spec("OrganizationAdmin", org(), hours(1));
    let a =
        f.wf.request(&user("alice"), admin.clone(), t(0))
            .unwrap()
            .id;
    f.wf.approve(&user("carol"), &a, None, t(1)).unwrap();
    assert_eq!(
        f.wf.cancel(&user("alice"), &a, None, t(2))
            .unwrap()
            .state(t(2)),
        State::Cancelled
    );
    let b = f.wf.request(&user("alice"), admin, t(3)).unwrap().id;
    f.wf.approve(&user("carol"), &b, None, t(4)).unwrap();
    assert_eq!(
        f.wf.deny(&user("frank"), &b, None, t(5))
            .unwrap()
            .state(t(5)),
        State::Denied
    );
}

#[test]
fn an_approver_revokes_a_grant_and_it_leaves_the_feed() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0));
    assert_eq!(f.wf.feed(t(30))["grants"].as_array().unwrap().len(), 1);
    let e = f.wf.revoke(&user("carol"), &id, None, t(30)).unwrap();
    assert_eq!(e.state(t(30)), State::Revoked);
    assert!(!e.in_force(t(30)));
    assert_eq!(f.wf.feed(t(30))["grants"], json!([]));
    assert_eq!(f.events().pop().unwrap().kind, "revoked");
}

#[test]
fn an_organization_admin_revokes_any_grant() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0));
    // frank may not approve FinOps, but as an org admin he may revoke it.
    let e = f.wf.revoke(&user("frank"), &id, None, t(30)).unwrap();
    assert_eq!(e.state(t(30)), State::Revoked);
}

#[test]
fn a_grant_not_yet_started_can_be_revoked() {
    let mut f = Fixture::new();
    let mut s = finops(ws(1), hours(1));
    s.not_before = Some(t(120));
    let id = f.wf.request(&user("alice"), s, t(0)).unwrap().id;
    f.wf.approve(&user("carol"), &id, None, t(1)).unwrap();
    assert_eq!(
        f.wf.revoke(&user("carol"), &id, None, t(2))
            .unwrap()
            .state(t(200)),
        State::Revoked
    );
    assert_eq!(f.wf.feed(t(2))["grants"], json!([]));
}

#[test]
fn the_grantee_relinquishes_a_grant_early() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0));
    let e =
        f.wf.relinquish(&user("alice"), &id, Some("done".into()), t(15))
            .unwrap();
    assert_eq!(e.state(t(15)), State::Relinquished);
    assert_eq!(e.ended.unwrap().at, t(15));
    assert_eq!(f.wf.feed(t(15))["grants"], json!([]));
    assert_eq!(f.events().pop().unwrap().kind, "relinquished");
}

#[test]
fn an_api_key_requests_in_its_own_workspace_recording_whom_it_acts_for() {
    let mut f = Fixture::new();
    let mut s = finops(ws(1), hours(1));
    s.on_behalf_of = Some("pipeline run 4711".into());
    let e = f.wf.request(&key("bb-ws1"), s, t(0)).unwrap();
    assert_eq!(e.principal, key("bb-ws1"));
    assert_eq!(e.on_behalf_of.as_deref(), Some("pipeline run 4711"));
    f.wf.approve(&user("carol"), &e.id, None, t(1)).unwrap();
    let grant = &f.wf.feed(t(1))["grants"][0];
    assert_eq!(grant["principal"], "ApiKey::\"bb-ws1\"");
    assert_eq!(grant["requested_by"], "ApiKey::\"bb-ws1\"");
    assert_eq!(grant["on_behalf_of"], "pipeline run 4711");
    assert_eq!(grant["ticket"], "OPS-9");
    assert_eq!(f.events()[0].data["on_behalf_of"], "pipeline run 4711");
}

#[test]
fn a_workspace_owner_approves_finops_in_their_own_workspace_only() {
    let mut f = Fixture::new();
    // bob owns ws-1.
    let id = f.alice_finops(t(0));
    assert_eq!(
        f.wf.approve(&user("bob"), &id, None, t(1))
            .unwrap()
            .state(t(1)),
        State::Approved
    );
    let other =
        f.wf.request(&user("dave"), finops(ws(2), hours(1)), t(2))
            .unwrap()
            .id;
    let message = not_permitted(f.wf.approve(&user("bob"), &other, None, t(3)));
    assert!(message.contains("no policy permits"), "{message}");
}

#[test]
fn the_grant_keeps_the_ticket() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0));
    let e = f.wf.get(&id).unwrap();
    assert_eq!(e.ticket.as_deref(), Some("OPS-9"));
    let feed = f.wf.feed(t(1));
    assert_eq!(feed["grants"][0]["ticket"], "OPS-9");
    assert_eq!(feed["grants"][0]["reason"], "fix the payment method");
    // A request without one has none.
    let mut s = finops(ws(1), hours(1));
    s.ticket = None;
    let id = f.wf.request(&user("alice"), s, t(2)).unwrap().id;
    f.wf.approve(&user("carol"), &id, None, t(2)).unwrap();
    let feed = f.wf.feed(t(2));
    assert!(feed["grants"][1].get("ticket").is_none(), "{feed}");
}

// ------------------------------------------------------------------ extend

#[test]
fn an_extension_continues_the_grant_with_no_gap() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0)); // t(0)..t(120)
    let ext =
        f.wf.extend(&user("alice"), &id, more(hours(1)), t(60))
            .unwrap();
    assert_eq!(ext.id, "r-2");
    assert_eq!(ext.extends.as_deref(), Some("r-1"));
    assert_eq!(ext.not_before, Some(t(120)));
    assert_eq!(
        ext.ticket.as_deref(),
        Some("OPS-9"),
        "the ticket carries over"
    );
    assert_eq!((ext.role.as_str(), &ext.scope), ("FinOpsManager", &ws(1)));
    assert_eq!(ext.decide_by, t(120), "it lapses when the grant ends");
    assert_eq!(f.wf.get(&id).unwrap().extended_by, ["r-2"]);
    assert_eq!(f.events().pop().unwrap().data["extends"], "r-1");

    let ext = f.wf.approve(&user("carol"), &ext.id, None, t(90)).unwrap();
    let grant = ext.grant.clone().unwrap();
    assert_eq!((grant.not_before, grant.expires_at), (t(120), t(180)));
    let old = f.wf.get(&id).unwrap().clone();
    // At every instant from t(0) to just before t(180) exactly one is in force.
    for now in [t(0), t(120) - ns(1), t(120), t(179), t(180) - ns(1)] {
        let live = [old.in_force(now), ext.in_force(now)];
        assert_eq!(live.iter().filter(|x| **x).count(), 1, "at {now}: {live:?}");
    }
    assert!(!old.in_force(t(180)) && !ext.in_force(t(180)));
    // Both are in the feed until the first one expires.
    let feed = f.wf.feed(t(90));
    let ids: Vec<&str> = feed["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["g-1", "g-2"]);
}

#[test]
fn an_extension_can_itself_be_extended() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0));
    let e2 =
        f.wf.extend(&user("alice"), &id, more(hours(1)), t(10))
            .unwrap()
            .id;
    f.wf.approve(&user("carol"), &e2, None, t(11)).unwrap();
    // Already extended: the next extension goes on the latest link.
    assert!(matches!(
        f.wf.extend(&user("alice"), &id, more(hours(1)), t(12)),
        Err(WorkflowError::AlreadyExtended { by, .. }) if by == e2
    ));
    let e3 =
        f.wf.extend(&user("alice"), &e2, more(hours(1)), t(12))
            .unwrap();
    assert_eq!(e3.not_before, Some(t(180)));
    let e3 = f.wf.approve(&user("carol"), &e3.id, None, t(13)).unwrap();
    assert_eq!(e3.grant.unwrap().expires_at, t(240));
}

#[test]
fn an_unapproved_extension_lapses_when_the_grant_ends() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0));
    let ext =
        f.wf.extend(&user("alice"), &id, more(hours(1)), t(60))
            .unwrap()
            .id;
    assert_eq!(f.state(&ext, t(120) - ns(1)), State::Pending);
    assert_eq!(f.state(&ext, t(120)), State::Lapsed);
    assert_eq!(
        wrong_state(f.wf.approve(&user("carol"), &ext, None, t(120))),
        State::Lapsed
    );
}

#[test]
fn revoking_a_grant_ends_its_approved_extensions_and_lapses_pending_ones() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0));
    let e2 =
        f.wf.extend(&user("alice"), &id, more(hours(1)), t(10))
            .unwrap()
            .id;
    f.wf.approve(&user("carol"), &e2, None, t(11)).unwrap();
    let e3 =
        f.wf.extend(&user("alice"), &e2, more(hours(1)), t(12))
            .unwrap()
            .id;
    f.wf.revoke(&user("carol"), &id, None, t(30)).unwrap();
    assert_eq!(f.state(&id, t(30)), State::Revoked);
    assert_eq!(f.state(&e2, t(30)), State::Revoked);
    assert_eq!(f.state(&e3, t(30)), State::Lapsed);
    assert_eq!(f.wf.get(&e3).unwrap().decide_by, t(30));
    assert_eq!(f.wf.feed(t(30))["grants"], json!([]));
    assert_eq!(f.events().pop().unwrap().data, json!({"with": ["r-2"]}));
}

#[test]
fn relinquishing_a_grant_ends_its_extensions_too() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0));
    let e2 =
        f.wf.extend(&user("alice"), &id, more(hours(1)), t(10))
            .unwrap()
            .id;
    f.wf.approve(&user("carol"), &e2, None, t(11)).unwrap();
    f.wf.relinquish(&user("alice"), &id, None, t(20)).unwrap();
    assert_eq!(f.state(&e2, t(20)), State::Relinquished);
    assert_eq!(f.wf.feed(t(20))["grants"], json!([]));
}

#[test]
fn revoking_only_the_extension_keeps_the_grant_and_frees_it_for_another() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0));
    let e2 =
        f.wf.extend(&user("alice"), &id, more(hours(1)), t(10))
            .unwrap()
            .id;
    f.wf.approve(&user("carol"), &e2, None, t(11)).unwrap();
    f.wf.revoke(&user("carol"), &e2, None, t(12)).unwrap();
    assert_eq!(f.state(&id, t(12)), State::Approved);
    let e4 =
        f.wf.extend(&user("alice"), &id, more(hours(1)), t(13))
            .unwrap();
    assert_eq!(e4.not_before, Some(t(120)));
}

#[test]
fn extension_refusals() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0));
    // Only the grantee.
    assert!(matches!(
        f.wf.extend(&user("bob"), &id, more(hours(1)), t(1)),
        Err(WorkflowError::NotGrantee { .. })
    ));
    // Only an approved grant.
    let pending = f.alice_finops(t(1));
    assert_eq!(
        wrong_state(f.wf.extend(&user("alice"), &pending, more(hours(1)), t(2))),
        State::Pending
    );
    assert_eq!(
        wrong_state(f.wf.extend(&user("alice"), &id, more(hours(1)), t(120))),
        State::Expired
    );
    // The extension is capped by the role like any request.
    let id = f.alice_granted(t(121));
    assert_eq!(
        forbidden_by(f.wf.extend(&user("alice"), &id, more(hours(5)), t(122))),
        ["duration-over-role-maximum"]
    );
    // A pending extension blocks another.
    let ext =
        f.wf.extend(&user("alice"), &id, more(hours(1)), t(122))
            .unwrap()
            .id;
    assert!(matches!(
        f.wf.extend(&user("alice"), &id, more(hours(1)), t(123)),
        Err(WorkflowError::AlreadyExtended { by, .. }) if by == ext
    ));
    // Once it is denied, a new one may be asked.
    f.wf.deny(&user("carol"), &ext, None, t(124)).unwrap();
    f.wf.extend(&user("alice"), &id, more(hours(1)), t(125))
        .unwrap();
}

#[test]
fn list_filters_by_state_at_now_and_by_principal() {
    let mut f = Fixture::new();
    let granted = f.alice_granted(t(0));
    let pending = f.alice_finops(t(1));
    let daves =
        f.wf.request(&user("dave"), finops(ws(2), hours(1)), t(2))
            .unwrap()
            .id;
    let ids = |list: Vec<&Elevation>| list.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    let all = Filter::default();
    assert_eq!(
        ids(f.wf.list(&all, t(3))),
        [granted.as_str(), pending.as_str(), daves.as_str()]
    );
    let pending_only = Filter {
        state: Some(State::Pending),
        ..Filter::default()
    };
    assert_eq!(
        ids(f.wf.list(&pending_only, t(3))),
        [pending.as_str(), daves.as_str()]
    );
    let expired = Filter {
        state: Some(State::Expired),
        ..Filter::default()
    };
    assert_eq!(ids(f.wf.list(&expired, t(120))), [granted.as_str()]);
    let mine = Filter {
        principal: Some(user("dave")),
        ..Filter::default()
    };
    assert_eq!(ids(f.wf.list(&mine, t(3))), [daves.as_str()]);
}

#[test]
fn to_json_carries_the_state_at_now() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0));
    let e = f.wf.get(&id).unwrap();
    let json = e.to_json(t(1));
    assert_eq!(json["state"], "approved");
    assert_eq!(json["principal"], "User::\"alice\"");
    assert_eq!(json["duration_seconds"], 7200);
    assert_eq!(json["grant"]["id"], "g-1");
    assert_eq!(e.to_json(t(120))["state"], "expired");
}

#[test]
fn state_names_round_trip() {
    for state in State::ALL {
        assert_eq!(state.as_str().parse::<State>().unwrap(), state);
        assert_eq!(json!(state), json!(state.as_str()));
    }
    assert!("gone".parse::<State>().unwrap_err().contains("pending"));
    assert!(!State::Pending.is_final() && !State::Approved.is_final());
    assert!(State::ALL.iter().filter(|s| s.is_final()).count() == 6);
}
