//! elevate: just-in-time permission elevation on Cedar. A decision sidecar that
//! combines workspace-scoped roles with time-boxed elevation grants.
//!
//! # Layout
//!
//! * [`config`]: typed settings, defaults, the TOML file.
//! * [`policy`]: policies, schema and entities; Cedar validation; elevation roles.
//! * [`policytest`]: declarative policy tests (`policies/tests/*.toml`) for `elevate test`.
//! * [`lint`]: elevation lints for `elevate validate` (codes `E001`…).
//! * [`prove`]: symbolic property checks (`policies/properties.toml`) for `elevate prove`.
//! * [`feed`]: the grant feed, grant checks, the `GrantIndex` by principal.
//! * [`request`]: decision requests (UIDs, context, per-request entities).
//! * [`snapshot`]: the live `Snapshot`, reload, watchers, status.
//! * [`watch`]: the file watcher of the route table, JWT keys, TLS files and tokens.
//! * [`priority`]: the low-priority worker thread reloads run on (`--reload-nice`).
//! * [`remote`]: the remote grant feed fetcher (`--grants-url`, ETag and long-poll).
//! * [`signing`]: signed grant feeds: Ed25519 keys, the envelope, what a sidecar accepts.
//! * [`engine`]: `decide(&Snapshot, &Query, now)`, pure.
//! * [`explain`]: why a decision came out as it did; near-miss grants.
//! * [`http`]: the HTTP API.
//! * [`tls`]: TLS and mTLS (rustls): the listener's reloaded certificate, the clients'
//!   trust and identity.
//! * [`gateway`]: the route table (`--routes`), principal and original request from a
//!   gateway's headers, AuthZEN requests: forward-auth and AuthZEN onto the engine.
//! * [`envoy`]: Envoy's ext_authz gRPC service (`--grpc-listen`), on the gateway code.
//! * [`metrics`]: Prometheus metrics on a caller-owned registry.
//! * [`audit`]: the decision log writer.
//! * [`eventlog`]: the workflow's hash-chained, fsynced event log (its source of truth).
//! * [`workflow`]: request → approve → grant → revoke, decided by Cedar, rebuilt from
//!   the event log, publishing the grant feed document.
//! * [`cli`]: the command line; [`shutdown`]: signals.
//!
//! ```text
//! policies/ schema/ entities ─┬─> snapshot: load → validate → swap ─> ArcSwap<Snapshot>
//! grant feed (file or HTTP) ──┘                                          │ one load per request
//! request ─> http ─> request::build_query ─> engine::decide(&snapshot, &query, now)
//!                                          ─> answer, decision record, metrics
//! ```

pub mod audit;
pub mod cli;
pub mod config;
pub mod engine;
pub mod entities;
pub mod envoy;
pub mod eventlog;
pub mod explain;
pub mod feed;
pub mod fuzzing;
pub mod gateway;
pub mod http;
pub mod lint;
pub mod metrics;
pub mod policy;
pub mod policytest;
pub mod priority;
pub mod prove;
pub mod remote;
pub mod request;
pub mod shutdown;
pub mod signing;
pub mod snapshot;
#[cfg(test)]
mod testutil;
pub mod tls;
pub mod tokens;
pub mod watch;
pub mod webhook;
pub mod workflow;
