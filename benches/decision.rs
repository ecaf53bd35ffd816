//! The decision path in process (no HTTP), stage by stage, with the shipped policies
//! and 0, 1 (the principal's own), 1,000 and 100,000 grants in the feed (spread over
//! 50,000 principals), beside
//! a bare `cedar_policy::Authorizer::is_authorized` call on the same request.
//!
//! Two requests by the same real user (`u-7`, see `support`):
//! * `grant_allow`: `createPaymentMethod` on `pm-42-0`; Allow only through the user's
//!   FinOpsManager grant on `ws-42` (Deny with 0 grants).
//! * `role_allow`: `readProject` on `p-3-1`; Allow through `workspace-member-read`.
//!
//! Stages, each per grant count: `parse` (serde into `Body`), `build_query` (UIDs,
//! context, `Request::new`), `decide` (`engine::decide`), `decide_linked` (the same
//! decision from Cedar's authorizer with the grants linked per request, as `decide`
//! made it before its conditions were prebuilt), `serialize` (`Answer` from
//! the `Outcome`, then JSON), and `whole` (bytes in, JSON bytes out). References:
//! `bare_cedar_static` (every static policy, no grants) and, for the grant request,
//! `bare_cedar_all_links` (every static policy plus every grant linked in one set).
//! `grant_allow_parts` splits the grant request further with Cedar's own API (UID
//! parsing, context and `Request::new` with and without the schema, the sliced static
//! evaluation, linking the principal's grant, evaluating it) and times the entity
//! slice: from the slice cache (`slice_cached`, what a repeated request pays), cut
//! from decoded entities (`slice_cut_hot_entities`), and cut decoding every entity
//! (`slice_cut_cold_entities`, a store whose caches hold one entity).
//! Every decision is checked before it is measured.
//!
//! Run: `cargo bench --bench decision -- --warm-up-time 1 --measurement-time 3`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::cell::Cell;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use cedar_policy::{Authorizer, Context, Decision, PolicySet, Request, SlotId};
use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use elevate::engine::{self, Outcome};
use elevate::http::Answer;
use elevate::request::{Body, Query, build_query, parse_uid};
use elevate::snapshot::Snapshot;
use jiff::Timestamp;

/// 1 is the principal's own grant alone: the like-for-like baseline for the grant
/// request, whose answer with 0 grants is a different (cheaper) Deny.
const GRANT_COUNTS: [usize; 4] = [0, 1, 1_000, 100_000];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    /// Allow from the principal's own grant.
    Grant,
    /// Allow from a day-to-day workspace role.
    Role,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Self::Grant => "grant_allow",
            Self::Role => "role_allow",
        }
    }

    /// The request body as a gateway would send it.
    fn body(self) -> Vec<u8> {
        let (action, resource) = match self {
            Self::Grant => (
                "createPaymentMethod",
                format!(
                    "PaymentMethod::\"{}\"",
                    support::payment_method(support::GRANT_WS, 0)
                ),
            ),
            Self::Role => (
                "readProject",
                format!("Project::\"{}\"", support::project(support::ROLE_WS, 1)),
            ),
        };
        serde_json::to_vec(&serde_json::json!({
            "principal": format!("User::\"{}\"", support::user(support::TARGET_USER)),
            "action": format!("Action::\"{action}\""),
            "resource": resource,
            "context": { "mfa": true },
        }))
        .unwrap()
    }

    /// Asserts the engine's outcome for this case with `grants` grants in the feed.
    fn check(self, outcome: &Outcome, grants: usize) {
        let reasons: Vec<String> = outcome.reasons.iter().map(ToString::to_string).collect();
        let used: Vec<String> = outcome.grants.iter().map(|g| g.id.to_string()).collect();
        assert!(
            outcome.errors.is_empty(),
            "{}: errors {:?}",
            self.name(),
            outcome.errors
        );
        assert!(!outcome.grants_suspended);
        match (self, grants) {
            (Self::Role, _) => {
                assert_eq!(outcome.decision, Decision::Allow, "role_allow/{grants}");
                assert_eq!(reasons, ["workspace-member-read"], "role_allow/{grants}");
                assert!(used.is_empty(), "role_allow/{grants} used grants {used:?}");
            }
            (Self::Grant, 0) => {
                assert_eq!(outcome.decision, Decision::Deny, "grant_allow/0");
                assert!(reasons.is_empty(), "grant_allow/0 reasons {reasons:?}");
            }
            (Self::Grant, _) => {
                assert_eq!(outcome.decision, Decision::Allow, "grant_allow/{grants}");
                assert_eq!(reasons, [support::TARGET_GRANT], "grant_allow/{grants}");
                assert_eq!(used, [support::TARGET_GRANT], "grant_allow/{grants}");
                assert!(
                    outcome.valid_until.is_some(),
                    "grant_allow/{grants}: valid_until"
                );
            }
        }
    }
}

fn parse(bytes: &[u8]) -> Body {
    serde_json::from_slice(bytes).unwrap()
}

fn query(snapshot: &Snapshot, bytes: &[u8]) -> Query {
    build_query(
        parse(bytes),
        &snapshot.bundle,
        &snapshot.store,
        snapshot.validation,
    )
    .unwrap()
}

thread_local! {
    static NEXT_ID: Cell<u64> = const { Cell::new(0) };
}

/// The `Answer` exactly as the HTTP handler builds it from an `Outcome`, with a
/// decision id formatted like the decision log's.
fn answer(outcome: Outcome) -> Answer {
    let n = NEXT_ID.with(|c| {
        let n = c.get();
        c.set(n + 1);
        n
    });
    Answer::new(outcome, format!("0123456789abcdef-{n}"))
}

fn serialize(outcome: Outcome) -> Vec<u8> {
    serde_json::to_vec(&answer(outcome)).unwrap()
}

/// Bytes in, JSON bytes out: what the handler does between reading the body and
/// writing the response, without metrics and decision log.
fn whole(snapshot: &Snapshot, bytes: &[u8], now: Timestamp) -> Vec<u8> {
    let q = query(snapshot, bytes);
    serialize(engine::decide(snapshot, &q, now))
}

/// Every static policy plus every grant of the snapshot linked into one set.
fn all_links(snapshot: &Snapshot) -> PolicySet {
    let bundle = &snapshot.bundle;
    let mut set = bundle.statics.clone();
    for role in bundle.roles.values() {
        set.add_template(role.template.clone()).unwrap();
    }
    for grant in snapshot.grants.iter() {
        let slots = HashMap::from([
            (SlotId::principal(), grant.principal.clone()),
            (SlotId::resource(), grant.scope.clone()),
        ]);
        set.link(grant.role.clone(), grant.id.clone(), slots)
            .unwrap();
    }
    set
}

fn bench_decision(c: &mut Criterion) {
    let now = support::now();
    let fixtures: Vec<(usize, Snapshot)> = GRANT_COUNTS
        .iter()
        .map(|&n| {
            let started = Instant::now();
            let snapshot = support::snapshot(n);
            eprintln!(
                "setup: snapshot with {n} grants built in {:.2?}",
                started.elapsed()
            );
            (n, snapshot)
        })
        .collect();
    let authorizer = Authorizer::new();

    for case in [Case::Grant, Case::Role] {
        let bytes = case.body();
        let mut group = c.benchmark_group(case.name());

        // The reference: Cedar alone, the same request, only the static policies.
        // The entity store is the same in every fixture.
        let (_, base) = &fixtures[0];
        let bare_query = query(base, &bytes);
        let statics = &base.bundle.statics;
        // Cedar's own store of every entity, as a bare server would hold it.
        let full = cedar_store(base);
        let entities = &full;
        let bare = authorizer.is_authorized(&bare_query.request, statics, entities);
        let bare_expected = match case {
            Case::Grant => Decision::Deny,
            Case::Role => Decision::Allow,
        };
        assert_eq!(
            bare.decision(),
            bare_expected,
            "{}: bare Cedar",
            case.name()
        );
        assert_eq!(bare.diagnostics().errors().count(), 0);
        group.bench_function("bare_cedar_static", |b| {
            b.iter(|| authorizer.is_authorized(black_box(&bare_query.request), statics, entities));
        });

        for (n, snapshot) in &fixtures {
            let n = *n;
            let q = query(snapshot, &bytes);
            let outcome = engine::decide(snapshot, &q, now);
            case.check(&outcome, n);
            // The sliced, per-principal evaluation equals Cedar over everything.
            let started = Instant::now();
            let (decision, reasons, errors) = engine::decide_unsliced(snapshot, &q, &full, now);
            eprintln!(
                "setup: decide_unsliced with {n} grants took {:.2?}",
                started.elapsed()
            );
            assert_eq!(
                decision,
                outcome.decision,
                "{}/{n}: unsliced decision",
                case.name()
            );
            let sliced: Vec<String> = outcome.reasons.iter().map(ToString::to_string).collect();
            assert_eq!(reasons, sliced, "{}/{n}: unsliced reasons", case.name());
            assert!(errors.is_empty());
            let json: serde_json::Value =
                serde_json::from_slice(&whole(snapshot, &bytes, now)).unwrap();
            let expected = if case == Case::Grant && n == 0 {
                "Deny"
            } else {
                "Allow"
            };
            assert_eq!(
                json["decision"],
                expected,
                "{}/{n}: answer {json}",
                case.name()
            );

            group.bench_with_input(BenchmarkId::new("parse", n), &bytes, |b, bytes| {
                b.iter(|| parse(black_box(bytes)));
            });
            group.bench_with_input(BenchmarkId::new("build_query", n), &bytes, |b, bytes| {
                b.iter_batched(
                    || parse(bytes),
                    |body| {
                        build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation)
                            .unwrap()
                    },
                    BatchSize::SmallInput,
                );
            });
            group.bench_with_input(BenchmarkId::new("decide", n), &q, |b, q| {
                b.iter(|| engine::decide(snapshot, black_box(q), now));
            });
            // The same decision from Cedar's authorizer and a per-request link, as
            // `decide` made it before its conditions were prebuilt.
            case.check(&engine::decide_linked(snapshot, &q, now), n);
            group.bench_with_input(BenchmarkId::new("decide_linked", n), &q, |b, q| {
                b.iter(|| engine::decide_linked(snapshot, black_box(q), now));
            });
            group.bench_with_input(BenchmarkId::new("serialize", n), &outcome, |b, outcome| {
                b.iter_batched(|| outcome.clone(), serialize, BatchSize::SmallInput);
            });
            group.bench_with_input(BenchmarkId::new("whole", n), &bytes, |b, bytes| {
                b.iter(|| whole(snapshot, black_box(bytes), now));
            });
        }
        group.finish();
    }

    // Where the time of the grant request goes, piece by piece, with Cedar's API.
    let bytes = Case::Grant.body();
    let (_, snapshot) = &fixtures[1];
    let schema = snapshot.bundle.schema.as_ref().unwrap();
    let full = cedar_store(snapshot);
    let entities = &full;
    let body = parse(&bytes);
    let q = query(snapshot, &bytes);
    let context_json = body.context.clone().unwrap();
    let context =
        Context::from_json_value(context_json.clone(), Some((schema, &q.action))).unwrap();
    let own = snapshot.grants.of(&q.principal);
    assert_eq!(own.len(), 1);
    let grant = &own[0];
    let role = &snapshot.bundle.roles[&grant.role];
    let link_own = || {
        let mut set = PolicySet::new();
        set.add_template(role.template.clone()).unwrap();
        let slots = HashMap::from([
            (SlotId::principal(), grant.principal.clone()),
            (SlotId::resource(), grant.scope.clone()),
        ]);
        set.link(grant.role.clone(), grant.id.clone(), slots)
            .unwrap();
        set
    };
    let own_set = link_own();
    let sliced = snapshot.slices.for_action(&q.action);
    let mut statics_and_own = snapshot.bundle.statics.clone();
    statics_and_own.add_template(role.template.clone()).unwrap();
    for policy in own_set.policies() {
        let (template, slots) = (
            policy.template_id().unwrap(),
            policy.template_links().unwrap(),
        );
        statics_and_own
            .link(template.clone(), policy.id().clone(), slots)
            .unwrap();
    }
    assert_eq!(
        authorizer
            .is_authorized(&q.request, &own_set, entities)
            .decision(),
        Decision::Allow
    );
    assert_eq!(
        authorizer
            .is_authorized(&q.request, sliced, entities)
            .decision(),
        Decision::Deny
    );
    assert_eq!(
        authorizer
            .is_authorized(&q.request, &statics_and_own, entities)
            .decision(),
        Decision::Allow
    );
    let mut group = c.benchmark_group("grant_allow_parts");
    group.bench_function("parse_uids", |b| {
        b.iter(|| {
            let body = black_box(&body);
            (
                parse_uid(&body.principal).unwrap(),
                parse_uid(&body.action).unwrap(),
                parse_uid(&body.resource).unwrap(),
            )
        });
    });
    group.bench_function("context_from_json_schema", |b| {
        b.iter_batched(
            || context_json.clone(),
            |json| Context::from_json_value(json, Some((schema, &q.action))).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("context_from_json_no_schema", |b| {
        b.iter_batched(
            || context_json.clone(),
            |json| Context::from_json_value(json, None).unwrap(),
            BatchSize::SmallInput,
        );
    });
    for (name, with_schema) in [
        ("request_new_schema", Some(schema)),
        ("request_new_no_schema", None),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    (
                        q.principal.clone(),
                        q.action.clone(),
                        q.resource.clone(),
                        context.clone(),
                    )
                },
                |(p, a, r, ctx)| Request::new(p, a, r, ctx, with_schema).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }
    // The entity slice for the request: decoded entities from the cache (hot), and
    // with a cache of one entity, so every entity is decoded again (cold).
    let roots: Vec<_> = [&q.principal, &q.action, &q.resource]
        .into_iter()
        .chain(&snapshot.bundle.entity_literals)
        .cloned()
        .collect();
    let cold = elevate::entities::EntityStore::build_with_cache(
        Some(&elevate::policy::SourceFile {
            path: "entities.json".into(),
            text: support::entities_json(),
        }),
        Some(schema),
        elevate::config::Validation::Strict,
        1,
    )
    .unwrap();
    let hot_slice = snapshot.store.slice(&roots).unwrap();
    let cold_slice = cold.slice_uncached(&roots).unwrap();
    assert_eq!(hot_slice.len(), cold_slice.len());
    eprintln!(
        "setup: the grant request's entity slice holds {} entities",
        hot_slice.len()
    );
    group.bench_function("slice_cached", |b| {
        b.iter(|| snapshot.store.slice(black_box(&roots)).unwrap());
    });
    group.bench_function("slice_cut_hot_entities", |b| {
        b.iter(|| snapshot.store.slice_uncached(black_box(&roots)).unwrap());
    });
    group.bench_function("slice_cut_cold_entities", |b| {
        b.iter(|| cold.slice_uncached(black_box(&roots)).unwrap());
    });
    group.bench_function("cedar_sliced_statics", |b| {
        b.iter(|| authorizer.is_authorized(black_box(&q.request), sliced, entities));
    });
    group.bench_function("link_own_grant", |b| b.iter(link_own));
    group.bench_function("cedar_own_link", |b| {
        b.iter(|| authorizer.is_authorized(black_box(&q.request), &own_set, entities));
    });
    group.bench_function("cedar_statics_plus_own_link", |b| {
        b.iter(|| authorizer.is_authorized(black_box(&q.request), &statics_and_own, entities));
    });
    group.finish();

    // Contrast: what the grant request costs if every grant were linked into the one
    // policy set Cedar evaluates (what the engine avoids by looking grants up).
    let mut group = c.benchmark_group("grant_allow_all_links");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for (n, snapshot) in fixtures.iter().filter(|(n, _)| *n > 0) {
        let started = Instant::now();
        let set = all_links(snapshot);
        eprintln!(
            "setup: linked {n} grants into one policy set in {:.2?}",
            started.elapsed()
        );
        assert_eq!(
            set.policies().count(),
            snapshot.bundle.statics.policies().count() + n
        );
        let q = query(snapshot, &bytes);
        let full = cedar_store(snapshot);
        let entities = &full;
        let response = authorizer.is_authorized(&q.request, &set, entities);
        assert_eq!(response.decision(), Decision::Allow, "all links/{n}");
        let reasons: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        assert_eq!(reasons, [support::TARGET_GRANT], "all links/{n}");
        group.bench_with_input(BenchmarkId::new("bare_cedar_all_links", n), &q, |b, q| {
            b.iter(|| authorizer.is_authorized(black_box(&q.request), &set, entities));
        });
    }
    group.finish();
}

/// Cedar's own store of every fixture entity, parsed with the schema in one piece: what
/// a plain Cedar server holds, and the reference the slices are checked against.
fn cedar_store(snapshot: &Snapshot) -> cedar_policy::Entities {
    let cedar = cedar_policy::Entities::from_json_str(
        &support::entities_json(),
        snapshot.bundle.schema.as_ref(),
    )
    .unwrap();
    assert_eq!(cedar.len(), snapshot.store.len());
    cedar
}

criterion_group!(benches, bench_decision);
criterion_main!(benches);
