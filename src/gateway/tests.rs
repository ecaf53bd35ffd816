#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::str::FromStr;

use cedar_policy::{Decision, EntityUid};
use hyper::HeaderMap;
use hyper::header::{HeaderName, HeaderValue};
use jiff::Timestamp;
use serde_json::json;

use super::authzen::{self, Evaluations, Semantic};
use super::origin::{self, OriginError, PathError};
use super::principal::{self, PrincipalError};
use super::table::{RouteError, RouteTable, TableError};
use super::*;
use crate::engine;
use crate::request;
use crate::testutil::{self, shipped};

fn schema() -> &'static cedar_policy::Schema {
    shipped().bundle.schema.as_ref().unwrap()
}

fn shipped_table() -> RouteTable {
    let text = std::fs::read_to_string(testutil::repo("deploy/local/routes.toml")).unwrap();
    RouteTable::parse(&text, Some(schema())).unwrap()
}

fn route_err(text: &str) -> RouteError {
    match RouteTable::parse(text, Some(schema())).unwrap_err() {
        TableError::Route { source, .. } => source,
        other => panic!("not a route error: {other}"),
    }
}

fn one_route(extra: &str) -> String {
    format!(
        r#"[[route]]
method = "GET"
path = "/api/workspaces/{{ws}}/payment-methods/{{pm}}"
action = 'Action::"readPaymentMethod"'
{extra}
"#
    )
}

fn segments(path: &str) -> Vec<String> {
    origin::parse_path(path).unwrap()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_str(name).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn uid(text: &str) -> EntityUid {
    EntityUid::from_str(text).unwrap()
}

fn user_type() -> cedar_policy::EntityTypeName {
    "User".parse().unwrap()
}

// ---- the shipped table ----

#[test]
fn the_shipped_route_table_validates_against_the_shipped_schema() {
    let table = shipped_table();
    assert!(table.len() >= 28, "{}", table.len());
    assert_eq!(table.headers(), &[HeaderName::from_static("x-request-id")]);
}

#[test]
fn the_shipped_route_table_covers_every_platform_action() {
    let routed: BTreeSet<String> = shipped_table()
        .routes()
        .iter()
        .map(|r| r.action.to_string())
        .collect();
    // Every action that applies to something other than the workflow's own requests.
    let platform: BTreeSet<String> = schema()
        .actions()
        .filter(|a| {
            schema()
                .resources_for_action(a)
                .is_some_and(|mut r| r.any(|t| t.to_string() != "ElevationRequest"))
        })
        .map(ToString::to_string)
        .collect();
    let missing: Vec<_> = platform.difference(&routed).collect();
    assert!(missing.is_empty(), "no route for {missing:?}");
    assert!(routed.contains(r#"Action::"createPaymentMethod""#));
}

/// Decides a gateway request against the shipped snapshot, as `/v1/forward-auth` does.
fn decide_shipped(method: &str, path: &str, who: &str, now: Timestamp) -> engine::Outcome {
    decide_on(shipped(), method, path, who, now)
}

fn decide_on(
    snapshot: &crate::snapshot::Snapshot,
    method: &str,
    path: &str,
    who: &str,
    now: Timestamp,
) -> engine::Outcome {
    let table = shipped_table();
    let segs = segments(path);
    let matched = table.find(method, &segs).expect("a route");
    let principal = principal::parse_principal(
        &headers(&[("x-auth-principal", who)]),
        &HeaderName::from_static("x-auth-principal"),
        &user_type(),
    )
    .unwrap();
    let original = Original {
        method: method.into(),
        path: path.into(),
        query: String::new(),
    };
    let body = body_for(
        &matched,
        &principal,
        &original,
        Some("10.0.0.7".parse().unwrap()),
        &headers(&[("x-request-id", "r-1")]),
        &table,
        &snapshot.store,
    );
    let query =
        request::build_query(body, &snapshot.bundle, &snapshot.store, snapshot.validation).unwrap();
    engine::decide(snapshot, &query, now)
}

#[test]
fn shipped_routes_decide_as_the_policies_say() {
    let now = Timestamp::now();
    let allow = |m, p, who| decide_shipped(m, p, who, now).decision == Decision::Allow;
    // alice is a member of ws-1: reads, never writes, never billing.
    assert!(allow(
        "GET",
        "/api/workspaces/ws-1/projects/checkout",
        "alice"
    ));
    assert!(!allow(
        "DELETE",
        "/api/workspaces/ws-1/projects/checkout",
        "alice"
    ));
    assert!(!allow(
        "GET",
        "/api/workspaces/ws-2/projects/warehouse",
        "alice"
    ));
    assert!(!allow(
        "POST",
        "/api/workspaces/ws-1/payment-methods",
        "alice"
    ));
    // bob owns ws-1: writes and reads payment methods, no billing changes.
    assert!(allow(
        "DELETE",
        "/api/workspaces/ws-1/projects/checkout",
        "bob"
    ));
    assert!(allow(
        "GET",
        "/api/workspaces/ws-1/payment-methods/pm-1",
        "bob"
    ));
    assert!(!allow(
        "POST",
        "/api/workspaces/ws-1/payment-methods",
        "bob"
    ));
    // A building block deep in the chain, and a key bound to its own workspace.
    let bb = "/api/workspaces/ws-1/projects/checkout/tenants/checkout-aws-prod/building-blocks/bb-checkout-postgres";
    assert!(allow("GET", bb, "alice"));
    assert!(allow("PATCH", bb, r#"ApiKey::"bb-ws1""#));
    assert!(!allow(
        "GET",
        "/api/workspaces/ws-2/projects/warehouse",
        r#"ApiKey::"bb-ws1""#
    ));
}

#[test]
fn a_new_resource_gets_its_parents_from_the_path() {
    let now = Timestamp::now();
    // pm-new is not in the entity store: the path puts it in ws-1, where bob is owner.
    let outcome = decide_shipped(
        "GET",
        "/api/workspaces/ws-1/payment-methods/pm-new",
        "bob",
        now,
    );
    assert_eq!(outcome.decision, Decision::Allow);
    // A new tenant two levels down, under a new project: the whole chain is made.
    let outcome = decide_shipped(
        "GET",
        "/api/workspaces/ws-1/projects/new-project/tenants/new-tenant",
        "alice",
        now,
    );
    assert_eq!(outcome.decision, Decision::Allow);
}

#[test]
fn a_stored_resource_keeps_its_stored_parents_whatever_the_path_says() {
    let now = Timestamp::now();
    // warehouse is in ws-2; a path claiming ws-1 (where alice is a member) changes nothing.
    let outcome = decide_shipped(
        "GET",
        "/api/workspaces/ws-1/projects/warehouse",
        "alice",
        now,
    );
    assert_eq!(outcome.decision, Decision::Deny);
    // pm-2 is stored in ws-2: bob owns ws-1 only.
    let outcome = decide_shipped(
        "GET",
        "/api/workspaces/ws-1/payment-methods/pm-2",
        "bob",
        now,
    );
    assert_eq!(outcome.decision, Decision::Deny);
}

#[test]
fn a_grant_allows_the_missions_example_only_while_in_force() {
    let snapshot = testutil::shipped_with_feed(&testutil::feed_of(&[testutil::grant(
        "g-finops",
        r#"User::"alice""#,
        "FinOpsManager",
        r#"Workspace::"ws-1""#,
        "2026-01-01T10:00:00Z",
        "2026-01-01T12:00:00Z",
    )]));
    let at = |t: &str| t.parse::<Timestamp>().unwrap();
    let path = "/api/workspaces/ws-1/payment-methods";
    let inside = decide_on(&snapshot, "POST", path, "alice", at("2026-01-01T11:00:00Z"));
    assert_eq!(inside.decision, Decision::Allow);
    assert_eq!(inside.grants[0].id.to_string(), "g-finops");
    let at_expiry = decide_on(&snapshot, "POST", path, "alice", at("2026-01-01T12:00:00Z"));
    assert_eq!(at_expiry.decision, Decision::Deny);
    // The grant is for ws-1 only.
    let other = decide_on(
        &snapshot,
        "POST",
        "/api/workspaces/ws-2/payment-methods",
        "alice",
        at("2026-01-01T11:00:00Z"),
    );
    assert_eq!(other.decision, Decision::Deny);
}

// ---- body_for ----

#[test]
fn the_context_carries_the_client_ip_the_http_request_and_selected_headers() {
    let table = RouteTable::parse(
        &format!(
            "headers = [\"x-request-id\", \"user-agent\"]\n{}",
            one_route(r#"resource = 'PaymentMethod::"{pm}"'"#)
        ),
        Some(schema()),
    )
    .unwrap();
    let segs = segments("/api/workspaces/ws-1/payment-methods/pm%2D1");
    let matched = table.find("GET", &segs).unwrap();
    let body = body_for(
        &matched,
        &uid(r#"User::"bob""#),
        &Original {
            method: "GET".into(),
            path: "/api/workspaces/ws-1/payment-methods/pm%2D1".into(),
            query: "a=1&b=2".into(),
        },
        Some("192.0.2.9".parse().unwrap()),
        &headers(&[("x-request-id", "r-7"), ("x-other", "not selected")]),
        &table,
        &shipped().store,
    );
    assert_eq!(
        body.resource,
        json!({"type": "PaymentMethod", "id": "pm-1"})
    );
    assert_eq!(
        body.context.unwrap(),
        json!({
            "source_ip": {"__extn": {"fn": "ip", "arg": "192.0.2.9"}},
            "http": {
                "method": "GET",
                "path": "/api/workspaces/ws-1/payment-methods/pm%2D1",
                "query": "a=1&b=2",
                "headers": {"x-request-id": "r-7"},
            },
        })
    );
    // pm-1 is stored: no per-request entity.
    assert_eq!(body.entities, None);
}

#[test]
fn per_request_entities_stop_at_the_first_stored_link() {
    let table = shipped_table();
    let path = "/api/workspaces/ws-1/projects/checkout/tenants/t-new/building-blocks/bb-new";
    let segs = segments(path);
    let matched = table.find("GET", &segs).unwrap();
    let body = body_for(
        &matched,
        &uid(r#"User::"alice""#),
        &Original {
            method: "GET".into(),
            path: path.into(),
            query: String::new(),
        },
        None,
        &HeaderMap::new(),
        &table,
        &shipped().store,
    );
    // bb-new and t-new are new; checkout is stored, so the chain ends there.
    assert_eq!(
        body.entities.unwrap(),
        json!([
            {"uid": {"type": "BuildingBlock", "id": "bb-new"}, "attrs": {},
             "parents": [{"type": "Tenant", "id": "t-new"}]},
            {"uid": {"type": "Tenant", "id": "t-new"}, "attrs": {},
             "parents": [{"type": "Project", "id": "checkout"}]},
        ])
    );
    assert!(body.context.unwrap().get("source_ip").is_none());
}

#[test]
fn a_segment_holding_quotes_stays_inside_the_id() {
    let table = shipped_table();
    let segs = segments(r#"/api/workspaces/ws-1/projects/x%22%20%7C%7C%20true"#);
    let matched = table.find("GET", &segs).unwrap();
    assert_eq!(
        matched.resource(),
        EntityUid::from_type_name_and_id(
            "Project".parse().unwrap(),
            cedar_policy::EntityId::new(r#"x" || true"#)
        )
    );
}

// ---- parsing and validation ----

#[test]
fn route_placeholders_must_be_named_segments() {
    let err = route_err(&one_route(r#"resource = 'PaymentMethod::"{card}"'"#));
    assert_eq!(
        err,
        RouteError::UnknownPlaceholder {
            field: "resource",
            placeholder: "{card}".into()
        }
    );
    let err = route_err(&one_route(
        "resource = 'PaymentMethod::\"{pm}\"'\nparents = ['Workspace::\"{w}\"']",
    ));
    assert!(
        matches!(
            err,
            RouteError::UnknownPlaceholder {
                field: "parents",
                ..
            }
        ),
        "{err}"
    );
    let err = route_err(&one_route(
        "resource = 'PaymentMethod::\"{pm}\"'\ncontext = { note = \"{x}\" }",
    ));
    assert!(
        matches!(
            err,
            RouteError::UnknownPlaceholder {
                field: "context",
                ..
            }
        ),
        "{err}"
    );
    let err = route_err(&one_route(r#"resource = 'PaymentMethod::"{pm"'"#));
    assert!(err.to_string().contains("without its `}`"), "{err}");
}

#[test]
fn the_action_must_exist_and_apply_to_the_resource_type() {
    let err = route_err(
        "[[route]]\nmethod = \"GET\"\npath = \"/x\"\naction = 'Action::\"fly\"'\nresource = 'Workspace::\"w\"'\n",
    );
    assert_eq!(err, RouteError::UnknownAction(r#"Action::"fly""#.into()));
    let err = route_err(&one_route(r#"resource = 'Workspace::"{ws}"'"#));
    let text = err.to_string();
    assert!(matches!(err, RouteError::ResourceType { .. }), "{text}");
    assert!(text.contains("`PaymentMethod`"), "{text}");
    let err = route_err(
        "[[route]]\nmethod = \"GET\"\npath = \"/x\"\naction = 'readProject'\nresource = 'Project::\"p\"'\n",
    );
    assert!(matches!(err, RouteError::NotAnAction(_)), "{err}");
}

#[test]
fn parents_must_fit_the_schema_and_be_makeable() {
    // A PaymentMethod is in a Workspace, not in a Project.
    let err = route_err(&one_route(
        "resource = 'PaymentMethod::\"{pm}\"'\nparents = ['Project::\"{ws}\"']",
    ));
    assert!(matches!(err, RouteError::Entities(_)), "{err}");
    // A Workspace has a required `name`: it cannot be made per request.
    let err = route_err(
        "[[route]]\nmethod = \"GET\"\npath = \"/w/{ws}\"\naction = 'Action::\"readWorkspace\"'\n\
         resource = 'Workspace::\"{ws}\"'\nparents = ['Organization::\"acme\"']\n",
    );
    assert!(matches!(err, RouteError::Entities(_)), "{err}");
}

#[test]
fn context_additions_must_conform_and_may_not_replace_elevates_own() {
    let err = route_err(&one_route(
        "resource = 'PaymentMethod::\"{pm}\"'\ncontext = { source_ip = \"1.2.3.4\" }",
    ));
    assert_eq!(err, RouteError::ReservedContext("source_ip".into()));
    let err = route_err(&one_route(
        "resource = 'PaymentMethod::\"{pm}\"'\ncontext = { channel = \"api\" }",
    ));
    assert!(matches!(err, RouteError::Context(_)), "{err}");
    // `mfa` is declared: a route may set it.
    RouteTable::parse(
        &one_route("resource = 'PaymentMethod::\"{pm}\"'\ncontext = { mfa = true }"),
        Some(schema()),
    )
    .unwrap();
    // A selected header the schema does not declare makes every route invalid.
    let err = RouteTable::parse(
        &format!(
            "headers = [\"x-tenant\"]\n{}",
            one_route(r#"resource = 'PaymentMethod::"{pm}"'"#)
        ),
        Some(schema()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("x-tenant"), "{err}");
}

#[test]
fn paths_and_methods_are_checked() {
    for (path, needle) in [
        ("api/x", "start with `/`"),
        ("/api/{a}/{a}", "twice"),
        ("/api/v{n}", "whole segment"),
        ("/api//x", "empty"),
        ("/api/../x", "`..`"),
        ("/api/x?y=1", "query"),
    ] {
        let text = format!(
            "[[route]]\nmethod = \"GET\"\npath = \"{path}\"\naction = 'Action::\"readOrganization\"'\nresource = 'Organization::\"acme\"'\n"
        );
        let err = route_err(&text).to_string();
        assert!(err.contains(needle), "{path}: {err}");
    }
    let err = route_err(
        "[[route]]\nmethod = \"get\"\npath = \"/o\"\naction = 'Action::\"readOrganization\"'\nresource = 'Organization::\"acme\"'\n",
    );
    assert_eq!(err, RouteError::Method("get".into()));
    let err = route_err(
        "[[route]]\nmethod = []\npath = \"/o\"\naction = 'Action::\"readOrganization\"'\nresource = 'Organization::\"acme\"'\n",
    );
    assert_eq!(err, RouteError::NoMethod);
}

#[test]
fn two_routes_for_the_same_requests_are_refused() {
    let route = |method: &str, name: &str| {
        format!(
            "[[route]]\nmethod = {method}\npath = \"/o/{{{name}}}\"\naction = 'Action::\"readOrganization\"'\nresource = 'Organization::\"{{{name}}}\"'\n"
        )
    };
    let text = format!(
        "{}{}",
        route("[\"GET\", \"PUT\"]", "a"),
        route("\"PUT\"", "b")
    );
    let err = RouteTable::parse(&text, Some(schema())).unwrap_err();
    assert!(
        matches!(err, TableError::Ambiguous { first: 1, second: 2, ref method, .. } if method == "PUT"),
        "{err}"
    );
    // Different methods on the same path are fine.
    let text = format!("{}{}", route("\"GET\"", "a"), route("\"PUT\"", "b"));
    assert_eq!(RouteTable::parse(&text, Some(schema())).unwrap().len(), 2);
}

#[test]
fn syntax_errors_and_unknown_keys_name_the_place() {
    let err = RouteTable::parse("[[route]]\nmethod = \n", Some(schema())).unwrap_err();
    assert!(matches!(err, TableError::Syntax { line: 2, .. }), "{err}");
    let err = RouteTable::parse(
        "[[route]]\nmethod = \"GET\"\npath = \"/o\"\naction = 'Action::\"readOrganization\"'\nresource = 'Organization::\"a\"'\nresources = 1\n",
        Some(schema()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("resources"), "{err}");
    let err = RouteTable::parse("headers = [\"bad header\"]\n", None).unwrap_err();
    assert!(matches!(err, TableError::Header(_)), "{err}");
}

#[test]
fn without_a_schema_only_the_structure_is_checked() {
    let table = RouteTable::parse(
        "[[route]]\nmethod = \"GET\"\npath = \"/x/{id}\"\naction = 'Action::\"anything\"'\nresource = 'Thing::\"{id}\"'\n",
        None,
    )
    .unwrap();
    assert_eq!(table.len(), 1);
}

// ---- matching ----

#[test]
fn literal_segments_beat_named_ones_and_head_uses_get() {
    let text = "\
[[route]]
method = \"GET\"
path = \"/api/workspaces/{ws}\"
action = 'Action::\"readWorkspace\"'
resource = 'Workspace::\"{ws}\"'

[[route]]
name = \"the org's own workspace\"
method = \"GET\"
path = \"/api/workspaces/default\"
action = 'Action::\"readOrganization\"'
resource = 'Organization::\"acme\"'
";
    let table = RouteTable::parse(text, Some(schema())).unwrap();
    let m = table
        .find("GET", &segments("/api/workspaces/default"))
        .unwrap();
    assert_eq!(m.route.name, "the org's own workspace");
    let m = table
        .find("GET", &segments("/api/workspaces/ws-1/"))
        .unwrap();
    assert_eq!(m.route.name, "GET /api/workspaces/{ws}");
    assert_eq!(m.params().collect::<Vec<_>>(), vec![("ws", "ws-1")]);
    assert!(
        table
            .find("HEAD", &segments("/api/workspaces/ws-1"))
            .is_some()
    );
    assert!(
        table
            .find("POST", &segments("/api/workspaces/ws-1"))
            .is_none()
    );
    assert!(table.find("GET", &segments("/api/workspaces")).is_none());
    assert!(
        table
            .find("GET", &segments("/api/workspaces/ws-1/x"))
            .is_none()
    );
}

// ---- the original request ----

#[test]
fn the_original_request_comes_from_either_convention() {
    let nginx = origin::parse_original(&headers(&[
        ("x-original-method", "DELETE"),
        ("x-original-uri", "/api/x?y=1&z"),
    ]))
    .unwrap();
    assert_eq!(
        nginx,
        Original {
            method: "DELETE".into(),
            path: "/api/x".into(),
            query: "y=1&z".into()
        }
    );
    let caddy = origin::parse_original(&headers(&[
        ("x-forwarded-method", "post"),
        ("x-forwarded-uri", "/api/x"),
    ]))
    .unwrap();
    assert_eq!(caddy.method, "POST");
    assert_eq!(caddy.query, "");
    // Both, agreeing: fine.
    origin::parse_original(&headers(&[
        ("x-original-method", "GET"),
        ("x-original-uri", "/a"),
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/a"),
    ]))
    .unwrap();
}

#[test]
fn a_client_supplied_second_convention_that_disagrees_is_refused() {
    let err = origin::parse_original(&headers(&[
        ("x-original-method", "DELETE"),
        ("x-original-uri", "/api/x"),
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/api/x"),
    ]))
    .unwrap_err();
    assert!(matches!(err, OriginError::Conflict { .. }), "{err}");
    let err = origin::parse_original(&headers(&[
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/api/public"),
        ("x-original-method", "GET"),
        ("x-original-uri", "/api/admin"),
    ]))
    .unwrap_err();
    assert!(matches!(err, OriginError::Conflict { .. }), "{err}");
    let err = origin::parse_original(&headers(&[
        ("x-original-method", "GET"),
        ("x-original-method", "DELETE"),
        ("x-original-uri", "/a"),
    ]))
    .unwrap_err();
    assert!(matches!(err, OriginError::Conflict { .. }), "{err}");
}

#[test]
fn missing_or_malformed_originals_are_refused() {
    assert_eq!(
        origin::parse_original(&HeaderMap::new()).unwrap_err(),
        OriginError::Missing
    );
    assert!(matches!(
        origin::parse_original(&headers(&[("x-original-method", "GET")])).unwrap_err(),
        OriginError::Half(_)
    ));
    assert!(matches!(
        origin::parse_original(&headers(&[
            ("x-original-method", "GET"),
            ("x-original-uri", "http://evil/x")
        ]))
        .unwrap_err(),
        OriginError::Uri { .. }
    ));
    assert!(matches!(
        origin::parse_original(&headers(&[
            ("x-original-method", "G ET"),
            ("x-original-uri", "/x")
        ]))
        .unwrap_err(),
        OriginError::Method { .. }
    ));
}

#[test]
fn ambiguous_paths_are_refused() {
    assert_eq!(segments("/"), Vec::<String>::new());
    assert_eq!(segments("/a/b%20c/"), vec!["a", "b c"]);
    assert_eq!(segments("/a+b"), vec!["a+b"]);
    for (path, err) in [
        ("/a//b", PathError::EmptySegment),
        ("/a/../b", PathError::DotSegment),
        ("/a/%2e%2E/b", PathError::DotSegment),
        ("/a/./b", PathError::DotSegment),
        ("/a/b%2Fc", PathError::Separator),
        ("/a/b%5Cc", PathError::Separator),
        ("/a/b\\c", PathError::Separator),
        ("/a/%zz", PathError::Encoding),
        ("/a/%ff", PathError::Encoding),
        ("/a/%00", PathError::Control),
        ("/a/checkout;jsessionid=1", PathError::Semicolon),
        ("/a/checkout%3Bx", PathError::Semicolon),
    ] {
        assert_eq!(origin::parse_path(path).unwrap_err(), err, "{path}");
    }
}

#[test]
fn the_client_ip_comes_from_the_peer_unless_a_gateway_header_is_trusted() {
    let peer: std::net::SocketAddr = "127.0.0.1:5555".parse().unwrap();
    let spoofed = headers(&[
        ("x-forwarded-for", "203.0.113.1"),
        ("x-real-ip", "203.0.113.2"),
    ]);
    // Not configured: client-sent headers are ignored.
    assert_eq!(
        origin::client_ip(&spoofed, None, Some(peer)).unwrap(),
        Some(peer.ip())
    );
    let xff = HeaderName::from_static("x-forwarded-for");
    let h = headers(&[("x-forwarded-for", "203.0.113.1, 198.51.100.4")]);
    assert_eq!(
        origin::client_ip(&h, Some(&xff), Some(peer)).unwrap(),
        Some("198.51.100.4".parse().unwrap()),
        "the last hop, added by the gateway next to elevate"
    );
    let h = headers(&[("x-forwarded-for", "[2001:db8::1]:443")]);
    assert_eq!(
        origin::client_ip(&h, Some(&xff), None).unwrap(),
        Some("2001:db8::1".parse().unwrap())
    );
    assert!(matches!(
        origin::client_ip(&HeaderMap::new(), Some(&xff), Some(peer)).unwrap_err(),
        ClientIpError::Missing(_)
    ));
    let h = headers(&[("x-forwarded-for", "1.2.3.4, unknown")]);
    assert!(matches!(
        origin::client_ip(&h, Some(&xff), Some(peer)).unwrap_err(),
        ClientIpError::Invalid { .. }
    ));
}

// ---- the principal ----

#[test]
fn the_principal_is_a_uid_or_a_bare_id_of_the_default_type() {
    let header = HeaderName::from_static("x-auth-principal");
    let parse = |v: &str| {
        principal::parse_principal(&headers(&[("x-auth-principal", v)]), &header, &user_type())
    };
    assert_eq!(parse("alice").unwrap(), uid(r#"User::"alice""#));
    assert_eq!(
        parse(r#"ApiKey::"bb-ws1""#).unwrap(),
        uid(r#"ApiKey::"bb-ws1""#)
    );
    assert_eq!(
        parse("alice@example.com").unwrap().id().unescaped(),
        "alice@example.com"
    );
    assert!(matches!(
        parse("User::alice"),
        Err(PrincipalError::Invalid { .. })
    ));
    assert!(matches!(parse("  "), Err(PrincipalError::Missing(_))));
    assert!(matches!(
        principal::parse_principal(&HeaderMap::new(), &header, &user_type()),
        Err(PrincipalError::Missing(_))
    ));
    let twice = headers(&[("x-auth-principal", "alice"), ("x-auth-principal", "bob")]);
    assert!(matches!(
        principal::parse_principal(&twice, &header, &user_type()),
        Err(PrincipalError::Repeated(_))
    ));
}

// ---- AuthZEN ----

#[test]
fn an_authzen_evaluation_maps_onto_a_decision_body() {
    let body = authzen::parse_evaluation(&json!({
        "subject": {"type": "User", "id": "alice", "properties": {"department": "x"}},
        "action": {"name": "readProject"},
        "resource": {"type": "Project", "id": "checkout"},
        "context": {"mfa": true},
    }))
    .unwrap();
    assert_eq!(body.principal, json!({"type": "User", "id": "alice"}));
    assert_eq!(body.action, json!({"type": "Action", "id": "readProject"}));
    assert_eq!(body.resource, json!({"type": "Project", "id": "checkout"}));
    assert_eq!(body.context, Some(json!({"mfa": true})));
    let namespaced = authzen::parse_evaluation(&json!({
        "subject": {"type": "User", "id": "a"},
        "action": {"name": "App::Action::\"read\""},
        "resource": {"type": "Project", "id": "c"},
    }))
    .unwrap();
    assert_eq!(
        namespaced.action,
        json!({"type": "App::Action", "id": "read"})
    );
    for (value, needle) in [
        (json!([]), "JSON object"),
        (
            json!({"action": {"name": "a"}, "resource": {"type": "T", "id": "i"}}),
            "`subject` is missing",
        ),
        (
            json!({"subject": {"type": "user name", "id": "a"}, "action": {"name": "a"}, "resource": {"type": "T", "id": "i"}}),
            "`subject.type`",
        ),
        (
            json!({"subject": {"type": "User"}, "action": {"name": "a"}, "resource": {"type": "T", "id": "i"}}),
            "`subject.id`",
        ),
        (
            json!({"subject": {"type": "User", "id": "a"}, "action": {}, "resource": {"type": "T", "id": "i"}}),
            "`action.name`",
        ),
        (
            json!({"subject": {"type": "User", "id": "a"}, "action": {"name": "a"}, "resource": {"type": "T", "id": "i"}, "context": 3}),
            "`context`",
        ),
    ] {
        let err = authzen::parse_evaluation(&value).unwrap_err();
        assert!(err.contains(needle), "{value}: {err}");
    }
}

#[test]
fn authzen_batch_defaults_apply_unless_an_item_overrides_them() {
    let parsed = authzen::parse_evaluations(&json!({
        "subject": {"type": "User", "id": "alice"},
        "action": {"name": "readProject"},
        "context": {"mfa": true},
        "evaluations": [
            {"resource": {"type": "Project", "id": "checkout"}},
            {"action": {"name": "deleteProject"}, "resource": {"type": "Project", "id": "checkout"}, "context": {}},
            {"action": {"name": "readProject"}},
            7,
        ],
    }))
    .unwrap();
    let Evaluations::Batch { items, semantic } = parsed else {
        panic!("a batch")
    };
    assert_eq!(semantic, Semantic::ExecuteAll);
    assert_eq!(items.len(), 4);
    let first = items[0].as_ref().unwrap();
    assert_eq!(first.principal, json!({"type": "User", "id": "alice"}));
    assert_eq!(first.action, json!({"type": "Action", "id": "readProject"}));
    assert_eq!(first.context, Some(json!({"mfa": true})));
    let second = items[1].as_ref().unwrap();
    assert_eq!(
        second.action,
        json!({"type": "Action", "id": "deleteProject"})
    );
    assert_eq!(
        second.context,
        Some(json!({})),
        "an item's context replaces the default"
    );
    assert!(
        items[2]
            .as_ref()
            .unwrap_err()
            .contains("`evaluations[2]`: `resource` is missing")
    );
    assert!(items[3].as_ref().unwrap_err().contains("must be an object"));
}

#[test]
fn authzen_evaluations_without_an_array_is_a_single_evaluation() {
    let parsed = authzen::parse_evaluations(&json!({
        "subject": {"type": "User", "id": "alice"},
        "action": {"name": "readProject"},
        "resource": {"type": "Project", "id": "checkout"},
    }))
    .unwrap();
    assert!(matches!(parsed, Evaluations::Single(_)));
    let semantic = |s: &str| match authzen::parse_evaluations(
        &json!({"evaluations": [], "options": {"evaluations_semantic": s}}),
    ) {
        Ok(Evaluations::Batch { semantic, .. }) => Ok(semantic),
        Ok(Evaluations::Single(_)) => panic!("a batch"),
        Err(e) => Err(e),
    };
    assert_eq!(
        semantic("deny_on_first_deny"),
        Ok(Semantic::DenyOnFirstDeny)
    );
    assert_eq!(
        semantic("permit_on_first_permit"),
        Ok(Semantic::PermitOnFirstPermit)
    );
    assert!(
        semantic("first")
            .unwrap_err()
            .contains("evaluations_semantic")
    );
    assert!(Semantic::DenyOnFirstDeny.stops_after(false));
    assert!(!Semantic::DenyOnFirstDeny.stops_after(true));
    assert!(Semantic::PermitOnFirstPermit.stops_after(true));
    assert!(!Semantic::ExecuteAll.stops_after(false));
    let err = authzen::parse_evaluations(&json!({"evaluations": {}})).unwrap_err();
    assert!(err.contains("array"), "{err}");
}

#[test]
fn route_values_render_into_ids_not_into_syntax() {
    let table = RouteTable::parse(
        &one_route("resource = 'PaymentMethod::\"card-{pm}\"'\nparents = ['Workspace::\"{ws}\"']"),
        Some(schema()),
    )
    .unwrap();
    let m = table
        .find("GET", &segments("/api/workspaces/w/payment-methods/7"))
        .unwrap();
    assert_eq!(m.resource(), uid(r#"PaymentMethod::"card-7""#));
}
