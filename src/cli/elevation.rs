//! The workflow subcommands (`request`, `approve`, `deny`, `revoke`, `cancel`,
//! `relinquish`, `extend`, `list`, `show`, `grants`): thin calls to the workflow API
//! of `elevate serve --workflow`, with one-line summaries for people and the server's
//! JSON as is for scripts (`--json`).
//!
//! The server decides everything; this side only checks what it can without asking
//! (durations, timestamps, states, the URL) so a typo is exit 3 before any request.
//! `request --wait` is the one piece of logic here: it polls until the grant is in
//! force, which is what automation (a Terraform building block) waits for.

use std::time::Duration;

use clap::Args;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::client::{Client, ClientError, DEFAULT_URL, Token, encode};
use super::{EXIT_DENY, EXIT_FAILURE, EXIT_INVALID, EXIT_OK, print};
use crate::policy::parse_duration;

/// How long `request --wait` waits for approval and the grant's start by default.
const DEFAULT_WAIT_TIMEOUT: &str = "30m";
/// Between two polls of a waited-for request: quick enough that automation resumes
/// within a second of approval, slow enough to be nothing for the server.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Every state the workflow knows, for `list --state`.
const STATES: &[&str] = &[
    "pending",
    "approved",
    "expired",
    "denied",
    "cancelled",
    "lapsed",
    "revoked",
    "relinquished",
];

/// Where the workflow API is, who is calling, and how to print the answer.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// The workflow server's base URL (http:// or https://)
    #[arg(long, env = "ELEVATE_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// With an https:// URL: trust only this CA (PEM) instead of the system roots
    #[arg(long, value_name = "FILE", env = "ELEVATE_CA")]
    pub ca: Option<std::path::PathBuf>,
    /// Bearer token; prefer the environment variable, since flags show in the process list
    #[arg(long, env = "ELEVATE_TOKEN", hide_env_values = true)]
    pub token: Option<Token>,
    /// Print the server's JSON answer (pretty-printed) instead of a summary
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The elevation role, e.g. `FinOpsManager`
    #[arg(long)]
    pub role: String,
    /// Where the role applies, e.g. `Workspace::"ws-1"` or `Organization::"acme"`
    #[arg(long)]
    pub scope: String,
    /// How long the grant lasts: `2h`, `90m`, `1h 30m` or ISO 8601 `PT2H`
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
    /// Why, for the approvers and the audit trail
    #[arg(long)]
    pub reason: String,
    /// A change or incident ticket, e.g. `OPS-1`
    #[arg(long)]
    pub ticket: Option<String>,
    /// Who the work is done for, when not for yourself
    #[arg(long, value_name = "WHO")]
    pub on_behalf_of: Option<String>,
    /// The earliest start of the grant (RFC 3339, e.g. `2026-12-03T17:00:00Z`)
    #[arg(long, value_name = "RFC3339")]
    pub not_before: Option<String>,
    /// Block until approved and the grant is in force; exit 2 if it is denied, lapses,
    /// or is cancelled or revoked first
    #[arg(long)]
    pub wait: bool,
    /// With `--wait`: give up (exit 1) after this long; the request stays open [default: 30m]
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub timeout: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `approve`, `deny`, `revoke`, `cancel` and `relinquish` take the same arguments.
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The request id (`r-3`) or its grant's id (`g-3`)
    pub id: String,
    /// A note recorded with the decision
    #[arg(long)]
    pub comment: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct ExtendArgs {
    /// The approved request (`r-3`) or grant (`g-3`) to extend
    pub id: String,
    /// The extra time after the current grant ends: `1h`, `30m`, `PT1H`
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
    /// Why, for the approvers and the audit trail
    #[arg(long)]
    pub reason: String,
    /// A change or incident ticket
    #[arg(long)]
    pub ticket: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only requests in this state: pending, approved, expired, denied, cancelled,
    /// lapsed, revoked or relinquished
    #[arg(long)]
    pub state: Option<String>,
    /// Only requests by this principal, e.g. `User::"alice"`
    #[arg(long, value_name = "UID")]
    pub principal: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The request id (`r-3`) or its grant's id (`g-3`)
    pub id: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Args)]
pub struct GrantsArgs {
    /// Only grants of this principal, e.g. `User::"alice"`
    #[arg(long, value_name = "UID")]
    pub principal: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The commands that move a request along with an optional comment.
#[derive(Debug, Clone, Copy)]
pub enum Decision {
    Approve,
    Deny,
    Revoke,
    Cancel,
    Relinquish,
}

impl Decision {
    fn route(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
            Self::Revoke => "revoke",
            Self::Cancel => "cancel",
            Self::Relinquish => "relinquish",
        }
    }
}

/// `elevate request`: ask for a grant, and with `--wait` block until it is in force.
pub fn request(args: &RequestArgs) -> u8 {
    finish(request_inner(args))
}

fn request_inner(args: &RequestArgs) -> Result<u8, Failure> {
    checked_duration("--for", &args.duration)?;
    let timeout = match &args.timeout {
        Some(text) => checked_duration("--timeout", text)?,
        None => checked_duration("--timeout", DEFAULT_WAIT_TIMEOUT)?,
    };
    let mut body = Map::new();
    body.insert("role".into(), json!(args.role));
    body.insert("scope".into(), json!(args.scope));
    // Passed on as typed: the check above only catches typos early.
    body.insert("duration".into(), json!(args.duration.trim()));
    body.insert("reason".into(), json!(args.reason));
    if let Some(ticket) = &args.ticket {
        body.insert("ticket".into(), json!(ticket));
    }
    if let Some(who) = &args.on_behalf_of {
        body.insert("on_behalf_of".into(), json!(who));
    }
    if let Some(text) = &args.not_before {
        let at: Timestamp = text.trim().parse().map_err(|e| {
            Failure::invalid(format!(
                "`--not-before` `{text}` is not an RFC 3339 timestamp like `2026-12-03T17:00:00Z`: {e}"
            ))
        })?;
        body.insert("not_before".into(), json!(at.to_string()));
    }
    let body = Value::Object(body);
    let server = &args.server;
    run(server, async |client| {
        let created = client.post("/v1/elevations", Some(&body)).await?;
        if !args.wait {
            return output(server, &created, summary);
        }
        let live = wait_until_live(client, created, timeout).await?;
        if server.json {
            print_json(&live);
        } else {
            let view = View::parse(&live)?;
            let (gid, expires) = view.grant.as_ref().map_or(("?", "?".to_owned()), |g| {
                (g.id.as_str(), g.expires_at.to_string())
            });
            print(&format!(
                "grant {gid} in force until {expires} (request {}: {} on {})\n",
                view.id, view.role, view.scope
            ));
        }
        Ok(EXIT_OK)
    })
}

/// `elevate approve|deny|revoke|cancel|relinquish ID [--comment ..]`.
pub fn decide(decision: Decision, args: &DecideArgs) -> u8 {
    let path = format!("/v1/elevations/{}/{}", encode(&args.id), decision.route());
    let body = args.comment.as_ref().map(|c| json!({"comment": c}));
    let server = &args.server;
    finish(run(server, async |client| {
        let updated = client.post(&path, body.as_ref()).await?;
        output(server, &updated, summary)
    }))
}

/// `elevate extend ID --for D --reason ..`: a new request whose grant follows on.
pub fn extend(args: &ExtendArgs) -> u8 {
    finish(extend_inner(args))
}

fn extend_inner(args: &ExtendArgs) -> Result<u8, Failure> {
    checked_duration("--for", &args.duration)?;
    let mut body = Map::new();
    // Passed on as typed: the check above only catches typos early.
    body.insert("duration".into(), json!(args.duration.trim()));
    body.insert("reason".into(), json!(args.reason));
    if let Some(ticket) = &args.ticket {
        body.insert("ticket".into(), json!(ticket));
    }
    let body = Value::Object(body);
    let path = format!("/v1/elevations/{}/extend", encode(&args.id));
    let server = &args.server;
    run(server, async |client| {
        let created = client.post(&path, Some(&body)).await?;
        output(server, &created, summary)
    })
}

/// `elevate list [--state S] [--principal UID]`: one line per request, oldest first.
pub fn list(args: &ListArgs) -> u8 {
    finish(list_inner(args))
}

fn list_inner(args: &ListArgs) -> Result<u8, Failure> {
    if let Some(state) = &args.state {
        check_state(state)?;
    }
    let path = list_path(args.state.as_deref(), args.principal.as_deref());
    let server = &args.server;
    run(server, async |client| {
        let answer = client.get(&path).await?;
        output(server, &answer, |answer| {
            let lines = elevations(answer)?
                .iter()
                .map(summary)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(lines.join(""))
        })
    })
}

/// `elevate show ID`: everything about one request, one field a line.
pub fn show(args: &ShowArgs) -> u8 {
    let path = format!("/v1/elevations/{}", encode(&args.id));
    let server = &args.server;
    finish(run(server, async |client| {
        let answer = client.get(&path).await?;
        output(server, &answer, details)
    }))
}

/// `elevate grants [--principal UID]`: the approved requests, as grants.
pub fn grants(args: &GrantsArgs) -> u8 {
    let path = list_path(Some("approved"), args.principal.as_deref());
    let server = &args.server;
    finish(run(server, async |client| {
        let answer = client.get(&path).await?;
        output(server, &answer, |answer| {
            let now = Timestamp::now();
            let lines = elevations(answer)?
                .iter()
                .map(|value| grant_line(value, now))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(lines.join(""))
        })
    }))
}

/// A command's failure: what `error:` says and the exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn invalid(message: String) -> Self {
        Self {
            code: EXIT_INVALID,
            message,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        Self {
            code: err.exit_code(),
            message: err.to_string(),
        }
    }
}

fn finish(result: Result<u8, Failure>) -> u8 {
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            failure.code
        }
    }
}

/// Runs `call` with a client for `server` on a current-thread runtime: one command is
/// a handful of sequential requests, so more threads would only cost start-up time.
fn run(
    server: &ServerArgs,
    call: impl AsyncFnOnce(&Client) -> Result<u8, Failure>,
) -> Result<u8, Failure> {
    let Some(token) = &server.token else {
        return Err(Failure {
            code: EXIT_FAILURE,
            message: "no token: pass `--token` or set `ELEVATE_TOKEN`".into(),
        });
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: EXIT_FAILURE,
            message: format!("cannot start the async runtime: {e}"),
        })?;
    runtime.block_on(async {
        let client = Client::new(&server.url, token, server.ca.as_deref())?;
        call(&client).await
    })
}

/// Prints `answer` as JSON or through `human`, and succeeds.
fn output(
    server: &ServerArgs,
    answer: &Value,
    human: impl FnOnce(&Value) -> Result<String, Failure>,
) -> Result<u8, Failure> {
    if server.json {
        print_json(answer);
    } else {
        print(&human(answer)?);
    }
    Ok(EXIT_OK)
}

fn print_json(value: &Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print(&format!("{text}\n"));
}

/// Checks a duration flag here, so a typo fails before the server is asked, and
/// returns it as typed: the server parses the same friendly and ISO 8601 forms.
fn checked_duration(flag: &str, text: &str) -> Result<SignedDuration, Failure> {
    let bad = |why: String| {
        Failure::invalid(format!(
            "`{flag}` `{text}` is not a duration like `2h`, `90m` or `PT2H`: {why}"
        ))
    };
    let duration = parse_duration(text).map_err(bad)?;
    if !duration.is_positive() {
        return Err(bad("it must be longer than zero".into()));
    }
    Ok(duration)
}

fn check_state(state: &str) -> Result<(), Failure> {
    if STATES.contains(&state) {
        return Ok(());
    }
    Err(Failure::invalid(format!(
        "`--state` `{state}` is not a state; use one of {}",
        STATES.join(", ")
    )))
}

fn list_path(state: Option<&str>, principal: Option<&str>) -> String {
    let query: Vec<String> = [("state", state), ("principal", principal)]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| format!("{name}={}", encode(v))))
        .collect();
    if query.is_empty() {
        "/v1/elevations".into()
    } else {
        format!("/v1/elevations?{}", query.join("&"))
    }
}

/// The `elevations` array of a list answer.
fn elevations(answer: &Value) -> Result<&[Value], Failure> {
    answer
        .get("elevations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| malformed("the list answer has no `elevations` array".into()))
}

/// Polls the request until its grant is in force (approved and started), or it ends
/// otherwise, or `timeout` passes. The grant's start is compared with this machine's
/// clock: the server's answer carries no instant of its own to compare with.
async fn wait_until_live(
    client: &Client,
    created: Value,
    timeout: SignedDuration,
) -> Result<Value, Failure> {
    let limit = Duration::try_from(timeout).unwrap_or(Duration::MAX);
    let started = tokio::time::Instant::now();
    let deadline = started.checked_add(limit);
    let mut current = created;
    let mut told_pending = false;
    let mut told_scheduled = false;
    let mut told_trouble = false;
    let mut path = None;
    loop {
        let view = View::parse(&current)?;
        let path = path.get_or_insert_with(|| format!("/v1/elevations/{}", encode(&view.id)));
        match view.state.as_str() {
            "pending" => {
                if !told_pending {
                    told_pending = true;
                    eprintln!(
                        "waiting for approval of {} ({})...",
                        view.id,
                        view.approvals_needed()
                    );
                }
            }
            "approved" => match &view.grant {
                Some(grant) if grant.not_before <= Timestamp::now() => return Ok(current),
                Some(grant) => {
                    if !told_scheduled {
                        told_scheduled = true;
                        eprintln!(
                            "{} approved; waiting for grant {} to start at {}...",
                            view.id, grant.id, grant.not_before
                        );
                    }
                }
                // An approved request always carries its grant; a server that says
                // otherwise is not one this client understands.
                None => {
                    return Err(malformed(format!(
                        "request `{}` is approved but has no grant",
                        view.id
                    )));
                }
            },
            "denied" | "cancelled" | "lapsed" | "revoked" | "relinquished" | "expired" => {
                return Err(Failure {
                    code: EXIT_DENY,
                    message: view.ending(),
                });
            }
            other => {
                return Err(malformed(format!(
                    "request `{}` is in state `{other}`, which this client does not know",
                    view.id
                )));
            }
        }
        let now = tokio::time::Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            return Err(Failure {
                code: EXIT_FAILURE,
                message: format!(
                    "gave up waiting after {timeout:#}: request `{}` is still {}; it stays open (`elevate cancel {}` withdraws it)",
                    view.id,
                    if view.state == "pending" {
                        "pending"
                    } else {
                        "approved but not yet in force"
                    },
                    view.id
                ),
            });
        }
        let pause = deadline.map_or(POLL_INTERVAL, |d| POLL_INTERVAL.min(d - now));
        tokio::time::sleep(pause).await;
        match client.get(path).await {
            Ok(value) => current = value,
            Err(err) if err.is_transient() => {
                if !told_trouble {
                    told_trouble = true;
                    eprintln!("{err}; still waiting, asking again");
                }
            }
            Err(err) => return Err(err.into()),
        }
    }
}

fn malformed(message: String) -> Failure {
    Failure {
        code: EXIT_FAILURE,
        message,
    }
}

/// The parts of the contract's elevation JSON the summaries show. Optional fields are
/// lenient (missing or `null`), so a server adding fields breaks nothing.
#[derive(Debug, Deserialize)]
struct View {
    id: String,
    principal: String,
    role: String,
    scope: String,
    duration_seconds: i64,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    ticket: Option<String>,
    #[serde(default)]
    on_behalf_of: Option<String>,
    #[serde(default)]
    not_before: Option<String>,
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    requested_at: Option<String>,
    #[serde(default)]
    decide_by: Option<String>,
    #[serde(default)]
    approvals_required: u32,
    #[serde(default)]
    approvals: Vec<ApprovalView>,
    #[serde(default)]
    grant: Option<GrantView>,
    #[serde(default)]
    ended: Option<EndedView>,
    #[serde(default)]
    extended_by: Vec<String>,
    state: String,
}

#[derive(Debug, Deserialize)]
struct ApprovalView {
    by: String,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GrantView {
    id: String,
    not_before: Timestamp,
    expires_at: Timestamp,
}

#[derive(Debug, Deserialize)]
struct EndedView {
    state: String,
    by: String,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

impl View {
    fn parse(value: &Value) -> Result<Self, Failure> {
        Self::deserialize(value)
            .map_err(|e| malformed(format!("the server's answer is not an elevation: {e}")))
    }

    fn duration(&self) -> String {
        format!("{:#}", SignedDuration::from_secs(self.duration_seconds))
    }

    fn approvals(&self) -> String {
        format!(
            "{}/{} approvals",
            self.approvals.len(),
            self.approvals_required
        )
    }

    fn approvals_needed(&self) -> String {
        let given = u32::try_from(self.approvals.len()).unwrap_or(u32::MAX);
        let missing = self.approvals_required.saturating_sub(given).max(1);
        let noun = if missing == 1 {
            "approval"
        } else {
            "approvals"
        };
        if given == 0 {
            format!("needs {missing} {noun}")
        } else {
            format!("needs {missing} more {noun}")
        }
    }

    /// Why a request is over without a grant in force, for `--wait`'s error.
    fn ending(&self) -> String {
        let id = &self.id;
        if let Some(ended) = &self.ended {
            let mut text = match ended.state.as_str() {
                "lapsed" => format!("request `{id}` lapsed undecided"),
                "expired" => format!("the grant of request `{id}` has expired"),
                state => format!("request `{id}` was {state} by {}", ended.by),
            };
            if let Some(at) = &ended.at {
                text.push_str(&format!(" at {at}"));
            }
            if let Some(comment) = &ended.comment {
                text.push_str(&format!(": {comment}"));
            }
            return text;
        }
        match (self.state.as_str(), &self.grant, &self.decide_by) {
            ("lapsed", _, Some(by)) => format!("request `{id}` lapsed undecided at {by}"),
            ("expired", Some(grant), _) => format!(
                "the grant of request `{id}` expired at {} before it was seen in force",
                grant.expires_at
            ),
            (state, _, _) => format!("request `{id}` is {state}"),
        }
    }
}

/// `r-3 pending FinOpsManager on Workspace::"ws-1" for 2h by User::"alice" (0/1 approvals)`
fn summary(value: &Value) -> Result<String, Failure> {
    let view = View::parse(value)?;
    let mut line = format!(
        "{} {} {} on {} for {} by {}",
        view.id,
        view.state,
        view.role,
        view.scope,
        view.duration(),
        view.principal
    );
    match (view.state.as_str(), &view.grant, &view.ended) {
        ("pending", _, _) => line.push_str(&format!(" ({})", view.approvals())),
        ("approved" | "expired", Some(grant), _) => line.push_str(&format!(
            " (grant {} from {} until {})",
            grant.id, grant.not_before, grant.expires_at
        )),
        (_, _, Some(ended)) if ended.state != "lapsed" && ended.state != "expired" => {
            line.push_str(&format!(" ({} by {})", ended.state, ended.by));
        }
        _ => {}
    }
    if let Some(original) = &view.extends {
        line.push_str(&format!(", extends {original}"));
    }
    line.push('\n');
    Ok(line)
}

/// `g-3 User::"alice" FinOpsManager on Workspace::"ws-1" from T until T (r-3)`
fn grant_line(value: &Value, now: Timestamp) -> Result<String, Failure> {
    let view = View::parse(value)?;
    let Some(grant) = &view.grant else {
        return Err(malformed(format!(
            "request `{}` is listed as approved but has no grant",
            view.id
        )));
    };
    let later = if grant.not_before > now {
        ", not yet in force"
    } else {
        ""
    };
    Ok(format!(
        "{} {} {} on {} from {} until {} ({}{later})\n",
        grant.id,
        view.principal,
        view.role,
        view.scope,
        grant.not_before,
        grant.expires_at,
        view.id
    ))
}

/// `show`: the summary line, then one field a line; absent fields are left out.
fn details(value: &Value) -> Result<String, Failure> {
    let view = View::parse(value)?;
    let mut rows: Vec<(&str, String)> = vec![
        ("principal", view.principal.clone()),
        ("role", view.role.clone()),
        ("scope", view.scope.clone()),
        ("duration", view.duration()),
        ("reason", view.reason.clone()),
    ];
    let optional = [
        ("ticket", &view.ticket),
        ("on behalf of", &view.on_behalf_of),
        ("not before", &view.not_before),
        ("extends", &view.extends),
        ("requested at", &view.requested_at),
        ("decide by", &view.decide_by),
    ];
    rows.extend(
        optional
            .into_iter()
            .filter_map(|(name, value)| value.clone().map(|v| (name, v))),
    );
    rows.push(("approvals", view.approvals()));
    for approval in &view.approvals {
        let mut text = format!("  {}", approval.by);
        if let Some(at) = &approval.at {
            text.push_str(&format!(" at {at}"));
        }
        if let Some(comment) = &approval.comment {
            text.push_str(&format!(": {comment}"));
        }
        rows.push(("", text));
    }
    if let Some(grant) = &view.grant {
        rows.push((
            "grant",
            format!(
                "{} from {} until {}",
                grant.id, grant.not_before, grant.expires_at
            ),
        ));
    }
    if let Some(ended) = &view.ended {
        let mut text = format!("{} by {}", ended.state, ended.by);
        if let Some(at) = &ended.at {
            text.push_str(&format!(" at {at}"));
        }
        if let Some(comment) = &ended.comment {
            text.push_str(&format!(": {comment}"));
        }
        rows.push(("ended", text));
    }
    if !view.extended_by.is_empty() {
        rows.push(("extended by", view.extended_by.join(", ")));
    }
    let mut out = format!("{} {}\n", view.id, view.state);
    for (name, value) in rows {
        let label = if name.is_empty() {
            String::new()
        } else {
            format!("{name}:")
        };
        out.push_str(&format!("  {label:<14}{value}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn pending() -> Value {
        json!({"id": "r-3", "principal": "User::\"alice\"", "role": "FinOpsManager",
               "scope": "Workspace::\"ws-1\"", "duration_seconds": 7200, "reason": "month end",
               "ticket": null, "on_behalf_of": null, "not_before": null, "extends": null,
               "requested_at": "2026-12-03T17:00:00Z", "decide_by": "2026-12-04T17:00:00Z",
               "approvals_required": 1, "approvals": [], "grant": null, "ended": null,
               "extended_by": [], "state": "pending"})
    }

    #[test]
    fn a_pending_request_reads_as_one_line() {
        assert_eq!(
            summary(&pending()).unwrap(),
            "r-3 pending FinOpsManager on Workspace::\"ws-1\" for 2h by User::\"alice\" (0/1 approvals)\n"
        );
    }

    #[test]
    fn durations_print_in_the_friendly_form() {
        let mut value = pending();
        value["duration_seconds"] = json!(5400);
        assert!(summary(&value).unwrap().contains(" for 1h 30m "));
    }

    #[test]
    fn an_ended_request_names_who_ended_it() {
        let mut value = pending();
        value["state"] = json!("denied");
        value["ended"] = json!({"state": "denied", "by": "User::\"carol\"",
                                "at": "2026-12-03T18:00:00Z", "comment": "not now"});
        let view = View::parse(&value).unwrap();
        assert_eq!(
            view.ending(),
            "request `r-3` was denied by User::\"carol\" at 2026-12-03T18:00:00Z: not now"
        );
        assert!(
            summary(&value)
                .unwrap()
                .contains("(denied by User::\"carol\")")
        );
    }

    #[test]
    fn durations_are_checked_before_asking() {
        assert!(checked_duration("--for", "2h").is_ok());
        assert!(checked_duration("--for", "PT2H").is_ok());
        assert_eq!(
            checked_duration("--for", "soon").unwrap_err().code,
            EXIT_INVALID
        );
        assert_eq!(
            checked_duration("--for", "0s").unwrap_err().code,
            EXIT_INVALID
        );
    }

    #[test]
    fn list_queries_are_encoded() {
        assert_eq!(list_path(None, None), "/v1/elevations");
        assert_eq!(
            list_path(Some("pending"), Some("User::\"alice\"")),
            "/v1/elevations?state=pending&principal=User%3A%3A%22alice%22"
        );
    }

    #[test]
    fn approvals_needed_counts_what_is_missing() {
        let mut value = pending();
        value["approvals_required"] = json!(2);
        assert_eq!(
            View::parse(&value).unwrap().approvals_needed(),
            "needs 2 approvals"
        );
        value["approvals"] = json!([{"by": "User::\"carol\"", "at": "2026-12-03T17:30:00Z"}]);
        assert_eq!(
            View::parse(&value).unwrap().approvals_needed(),
            "needs 1 more approval"
        );
    }
}
