//! Prometheus metrics: one [`Metrics`] registered on a registry the caller owns, so two
//! servers in one process never collide. Labels are small closed sets, never ids.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jiff::Timestamp;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::feed::RejectReason;
use crate::snapshot::{Input, InputStatus, Snapshot};

/// Every metric elevate exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    decisions: IntCounterVec,
    decision_seconds: Histogram,
    reloads: IntCounterVec,
    generation: IntGauge,
    grants: IntGauge,
    grants_in_force: IntGauge,
    grants_rejected: IntCounterVec,
    /// Whole feed documents refused by the signature, rollback and clock checks.
    feed_rejected: IntCounterVec,
    input_age: IntGaugeVec,
    /// No labels; a vector only so that it is absent until a remote feed first answers.
    feed_age: GaugeVec,
    decision_log_dropped: IntCounter,
    /// `[miss, hit]` of the decision cache.
    decision_cache: [IntCounter; 2],
    responses: IntCounterVec,
    /// Label children resolved once: `with_label_values` hashes the labels on every
    /// call, a cost paid on every decision otherwise. Filled on first use, so a series
    /// appears only once it has a count, as with the vector itself.
    resolved: Arc<Resolved>,
}

/// Status codes whose `responses` child is cached; others take the vector's path.
const CACHED_CODES: [u16; 13] = [
    200, 201, 304, 400, 401, 403, 404, 405, 409, 413, 422, 500, 503,
];
/// Room for this many routes in the cache.
const CACHED_ROUTES: usize = 32;

#[derive(Debug)]
struct Resolved {
    /// `[allow][used_grant]`.
    decisions: [[OnceLock<IntCounter>; 2]; 2],
    /// `route as usize * CACHED_CODES.len() + code index`.
    responses: Vec<OnceLock<IntCounter>>,
}

impl Default for Resolved {
    fn default() -> Self {
        Self {
            decisions: Default::default(),
            responses: (0..CACHED_ROUTES * CACHED_CODES.len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }
}

/// Routes, for the `route` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    IsAuthorized,
    Batch,
    Health,
    Ready,
    Status,
    Metrics,
    /// `/v1/elevations…`, `/v1/whoami`, `/v1/audit`.
    Workflow,
    Grants,
    /// `/v1/forward-auth`.
    ForwardAuth,
    /// `/access/v1/evaluation` (AuthZEN).
    Evaluation,
    /// `/access/v1/evaluations` (AuthZEN).
    Evaluations,
    /// `/.well-known/authzen-configuration`.
    AuthzenMetadata,
    /// `/v1/ext-authz/…` (Envoy ext_authz, HTTP service).
    ExtAuthz,
    /// `envoy.service.auth.v3.Authorization/Check` on the gRPC listener.
    ExtAuthzGrpc,
    Other,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IsAuthorized => "is_authorized",
            Self::Batch => "batch_is_authorized",
            Self::Health => "healthz",
            Self::Ready => "readyz",
            Self::Status => "status",
            Self::Metrics => "metrics",
            Self::Workflow => "workflow",
            Self::Grants => "grants",
            Self::ForwardAuth => "forward_auth",
            Self::Evaluation => "authzen_evaluation",
            Self::Evaluations => "authzen_evaluations",
            Self::AuthzenMetadata => "authzen_configuration",
            Self::ExtAuthz => "ext_authz",
            Self::ExtAuthzGrpc => "ext_authz_grpc",
            Self::Other => "other",
        }
    }
}

impl Metrics {
    /// Creates and registers every metric on `registry`.
    ///
    /// # Errors
    /// A metric of the same name is already registered there.
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        let decisions = IntCounterVec::new(
            Opts::new(
                "elevate_decisions_total",
                "Decisions by outcome and whether a grant was used",
            ),
            &["decision", "grant"],
        )?;
        let decision_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "elevate_decision_duration_seconds",
                "Time to decide one request, parsing and engine, without HTTP",
            )
            .buckets(vec![
                0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001,
                0.002_5, 0.005, 0.01, 0.05,
            ]),
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("elevate_reload_total", "Reloads by input and outcome"),
            &["input", "outcome"],
        )?;
        let generation = IntGauge::new(
            "elevate_snapshot_generation",
            "Generation of the live snapshot",
        )?;
        let grants = IntGauge::new(
            "elevate_grants",
            "Grants accepted from the feed, in force or not",
        )?;
        let grants_in_force =
            IntGauge::new("elevate_grants_in_force", "Grants in force at scrape time")?;
        let grants_rejected = IntCounterVec::new(
            Opts::new(
                "elevate_grants_rejected_total",
                "Grants rejected from the feed, by reason",
            ),
            &["reason"],
        )?;
        let feed_rejected = IntCounterVec::new(
            Opts::new(
                "elevate_feed_rejected_total",
                "Grant feed documents refused as a whole (signature, rollback, clock), by reason",
            ),
            &["reason"],
        )?;
        let input_age = IntGaugeVec::new(
            Opts::new(
                "elevate_input_age_seconds",
                "Seconds since each input was last loaded successfully",
            ),
            &["input"],
        )?;
        let feed_age = GaugeVec::new(
            Opts::new(
                "elevate_feed_age_seconds",
                "Seconds since the remote grant feed last confirmed the live document \
                 (absent for a file feed and before the first document)",
            ),
            &[],
        )?;
        let decision_log_dropped = IntCounter::new(
            "elevate_decision_log_dropped_total",
            "Decision records dropped because the log queue was full (never records that used a grant)",
        )?;
        let decision_cache_vec = IntCounterVec::new(
            Opts::new(
                "elevate_decision_cache_total",
                "Lookups of the decision cache of /v1/is_authorized by result (hit, miss); \
                 none while it is off or for explained requests",
            ),
            &["result"],
        )?;
        let decision_cache = [
            decision_cache_vec.with_label_values(&["miss"]),
            decision_cache_vec.with_label_values(&["hit"]),
        ];
        let responses = IntCounterVec::new(
            Opts::new(
                "elevate_http_responses_total",
                "HTTP responses by route and status code",
            ),
            &["route", "code"],
        )?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(decision_seconds.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(generation.clone()))?;
        registry.register(Box::new(grants.clone()))?;
        registry.register(Box::new(grants_in_force.clone()))?;
        registry.register(Box::new(grants_rejected.clone()))?;
        registry.register(Box::new(feed_rejected.clone()))?;
        registry.register(Box::new(input_age.clone()))?;
        registry.register(Box::new(feed_age.clone()))?;
        registry.register(Box::new(decision_log_dropped.clone()))?;
        registry.register(Box::new(decision_cache_vec))?;
        registry.register(Box::new(responses.clone()))?;
        // Pre-create label values so every series exists from the first scrape.
        for decision in ["allow", "deny"] {
            for grant in ["used", "none"] {
                decisions.with_label_values(&[decision, grant]);
            }
        }
        for input in Input::ALL {
            for outcome in ["ok", "error"] {
                reloads.with_label_values(&[input.as_str(), outcome]);
            }
        }
        for reason in RejectReason::ALL {
            grants_rejected.with_label_values(&[reason.as_str()]);
        }
        for reason in crate::signing::RejectReason::ALL {
            feed_rejected.with_label_values(&[reason.as_str()]);
        }
        Ok(Self {
            registry,
            decisions,
            decision_seconds,
            reloads,
            generation,
            grants,
            grants_in_force,
            grants_rejected,
            feed_rejected,
            input_age,
            feed_age,
            decision_log_dropped,
            decision_cache,
            responses,
            resolved: Arc::new(Resolved::default()),
        })
    }

    pub fn decision(&self, allow: bool, used_grant: bool, elapsed: Duration) {
        let slot = self
            .resolved
            .decisions
            .get(usize::from(allow))
            .and_then(|row| row.get(usize::from(used_grant)));
        let counter = || {
            let decision = if allow { "allow" } else { "deny" };
            let grant = if used_grant { "used" } else { "none" };
            self.decisions.with_label_values(&[decision, grant])
        };
        match slot {
            Some(slot) => slot.get_or_init(counter).inc(),
            None => counter().inc(),
        }
        self.decision_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn reload(&self, input: Input, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.reloads
            .with_label_values(&[input.as_str(), outcome])
            .inc();
    }

    /// Counts a reload of the gateway route table, as `input="routes"`.
    pub fn routes_reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.reloads.with_label_values(&["routes", outcome]).inc();
    }

    /// Creates the route table's reload series, so they exist from the first scrape
    /// of a server that has one (and not on servers that do not).
    pub fn register_routes_input(&self) {
        for outcome in ["ok", "error"] {
            self.reloads.with_label_values(&["routes", outcome]);
        }
    }

    /// Counts a reload of the gateway's JWT key set, as `input="jwt_keys"`.
    pub fn jwt_keys_reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.reloads.with_label_values(&["jwt_keys", outcome]).inc();
    }

    /// The registry these metrics are on, for a subsystem that registers its own
    /// (the gateway's `elevate_jwt_rejected_total`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Creates the JWT key set's reload series, as [`Metrics::register_routes_input`].
    pub fn register_jwt_keys_input(&self) {
        for outcome in ["ok", "error"] {
            self.reloads.with_label_values(&["jwt_keys", outcome]);
        }
    }

    pub fn grant_rejected(&self, reason: RejectReason) {
        self.grants_rejected
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    pub fn feed_rejected(&self, reason: crate::signing::RejectReason) {
        self.feed_rejected
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    pub fn decision_cache(&self, hit: bool) {
        if let Some(counter) = self.decision_cache.get(usize::from(hit)) {
            counter.inc();
        }
    }

    pub fn decision_log_dropped(&self) {
        self.decision_log_dropped.inc();
    }

    pub fn response(&self, route: Route, code: u16) {
        let child = || {
            self.responses
                .with_label_values(&[route.as_str(), &code.to_string()])
        };
        let slot = CACHED_CODES
            .iter()
            .position(|c| *c == code)
            .filter(|_| (route as usize) < CACHED_ROUTES)
            .and_then(|i| {
                self.resolved
                    .responses
                    .get(route as usize * CACHED_CODES.len() + i)
            });
        match slot {
            Some(slot) => slot.get_or_init(child).inc(),
            None => child().inc(),
        }
    }

    pub fn observe_snapshot(&self, snapshot: &Snapshot, now: Timestamp) {
        self.generation
            .set(i64::try_from(snapshot.generation).unwrap_or(i64::MAX));
        self.grants
            .set(i64::try_from(snapshot.grants.len()).unwrap_or(i64::MAX));
        self.grants_in_force
            .set(i64::try_from(snapshot.grants.in_force_count(now)).unwrap_or(i64::MAX));
    }

    /// Renders the text exposition, refreshing the time-dependent gauges first.
    pub fn render(
        &self,
        snapshot: &Snapshot,
        status: &[(Input, InputStatus)],
        now: Timestamp,
    ) -> String {
        self.observe_snapshot(snapshot, now);
        for (input, s) in status {
            if let Some(at) = s.last_reload {
                let age = at.duration_until(now).as_secs().max(0);
                self.input_age.with_label_values(&[input.as_str()]).set(age);
            }
            if *input == Input::Grants
                && let Some(at) = s.last_refresh
            {
                let age = at.duration_until(now).as_secs_f64().max(0.0);
                self.feed_age.with_label_values::<&str>(&[]).set(age);
            }
        }
        self.encode()
    }

    /// The text exposition of everything registered, as it stands.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
