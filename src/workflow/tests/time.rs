//! Lapse and expiry at their exact instants, what `tick` records, and the clock that
//! never goes backwards.

use super::*;

#[test]
fn a_request_is_pending_until_just_before_decide_by_and_lapsed_at_it() {
    let mut f = Fixture::new();
    let id = f.alice_finops(t(0));
    let deadline = t(0) + DEFAULT_REQUEST_TTL;
    assert_eq!(f.state(&id, deadline - ns(1)), State::Pending);
    assert_eq!(f.state(&id, deadline), State::Lapsed);
    assert_eq!(
        wrong_state(f.wf.approve(&user("carol"), &id, None, deadline)),
        State::Lapsed
    );
    assert_eq!(
        wrong_state(f.wf.cancel(&user("alice"), &id, None, deadline)),
        State::Lapsed
    );
}

#[test]
fn an_approval_one_nanosecond_before_the_deadline_counts() {
    let mut f = Fixture::new();
    let id = f.alice_finops(t(0));
    let deadline = t(0) + DEFAULT_REQUEST_TTL;
    let e =
        f.wf.approve(&user("carol"), &id, None, deadline - ns(1))
            .unwrap();
    assert_eq!(e.state(deadline), State::Approved);
}

#[test]
fn the_request_ttl_is_configurable() {
    let config = Config {
        request_ttl: SignedDuration::from_mins(15),
    };
    let mut f = Fixture::with(shipped(), config);
    let id = f.alice_finops(t(0));
    assert_eq!(f.state(&id, t(15) - ns(1)), State::Pending);
    assert_eq!(f.state(&id, t(15)), State::Lapsed);
}

#[test]
fn a_grant_is_in_force_until_just_before_expires_at_and_expired_at_it() {
    let mut f = Fixture::new();
    let id = f.alice_granted(t(0));
    let end = t(120);
    let e = f.wf.get(&id).unwrap().clone();
    assert!(e.in_force(end - ns(1)));
    assert_eq!(e.state(end - ns(1)), State::Approved);
    assert!(!e.in_force(end));
    assert_eq!(e.state(end), State::Expired);
    assert_eq!(
        f.wf.feed(end - ns(1))["grants"].as_array().unwrap().len(),
        1
    );
    assert_eq!(f.wf.feed(end)["grants"], json!([]));
    assert_eq!(
        wrong_state(f.wf.revoke(&user("carol"), &id, None, end)),
        State::Expired
    );
    assert_eq!(
        wrong_state(f.wf.relinquish(&user("alice"), &id, None, end)),
        State::Expired
    );
    // One nanosecond earlier, revoking still works.
    let mut g = Fixture::new();
    let id = g.alice_granted(t(0));
    g.wf.revoke(&user("carol"), &id, None, end - ns(1)).unwrap();
}

#[test]
fn tick_records_lapses_and_expiries_at_their_exact_instants_once() {
    let mut f = Fixture::new();
    let granted = f.alice_granted(t(0)); // expires t(120)
    let pending = f.alice_finops(t(1)); // lapses t(1) + 24 h
    assert!(f.wf.tick(t(120) - ns(1)).unwrap().is_empty());

    let seq = f.wf.last_seq();
    let events = f.wf.tick(t(120)).unwrap();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(
        (
            event.kind.as_str(),
            event.actor.as_str(),
            event.request_id.as_str()
        ),
        ("expired", SYSTEM_ACTOR, granted.as_str())
    );
    assert_eq!(event.data, json!({"at": "2026-12-03T11:00:00Z"}));
    assert_eq!(f.wf.last_seq(), seq + 1);
    assert_eq!(f.wf.feed(t(120))["revision"], (seq + 1).to_string());
    let ended = f.wf.get(&granted).unwrap().ended.clone().unwrap();
    assert_eq!((ended.state, ended.at), (State::Expired, t(120)));
    assert!(f.wf.tick(t(130)).unwrap().is_empty(), "recorded once");

    // Ticking late records the boundary, not the tick time.
    let late = t(1) + DEFAULT_REQUEST_TTL + hours(5);
    let events = f.wf.tick(late).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "lapsed");
    assert_eq!(events[0].time, late);
    assert_eq!(events[0].data, json!({"at": "2026-12-04T09:01:00Z"}));
    assert_eq!(f.state(&pending, late), State::Lapsed);
}

#[test]
fn states_do_not_depend_on_ticking() {
    let mut ticked = Fixture::new();
    let mut untouched = Fixture::new();
    for f in [&mut ticked, &mut untouched] {
        f.alice_granted(t(0));
        f.alice_finops(t(1));
    }
    ticked.wf.tick(t(200)).unwrap();
    ticked.wf.tick(t(1) + DEFAULT_REQUEST_TTL).unwrap();
    let now = t(1) + DEFAULT_REQUEST_TTL + hours(1);
    let states = |f: &Fixture| -> Vec<State> {
        f.wf.list(&Filter::default(), now)
            .iter()
            .map(|e| e.state(now))
            .collect()
    };
    assert_eq!(states(&ticked), states(&untouched));
    assert_eq!(states(&ticked), [State::Expired, State::Lapsed]);
    assert_eq!(
        ticked.wf.feed(now)["grants"],
        untouched.wf.feed(now)["grants"]
    );
}

#[test]
fn a_command_with_an_earlier_now_happens_at_the_last_event_time() {
    let mut f = Fixture::new();
    let id = f.alice_finops(t(60));
    // The clock stepped back: the approval is recorded at t(60), not t(0).
    let e = f.wf.approve(&user("carol"), &id, None, t(0)).unwrap();
    assert_eq!(e.grant.unwrap().not_before, t(60));
    assert_eq!(f.events().pop().unwrap().time, t(60));
    // Queries take `now` as given.
    assert_eq!(f.state(&id, t(0)), State::Approved);
}
