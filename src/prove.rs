//! Symbolic property checks for `elevate prove`: claims about every request the schema
//! allows, decided by [`cedar_policy_symcc`] and the cvc5 SMT solver rather than by
//! sampling requests. A property that fails comes with a counterexample: a request and
//! entity data on which the policies do what the property says they never do.
//!
//! Properties live in a TOML file beside the policies (`policies/properties.toml`; the
//! policy loader reads only `.cedar` files, so it is never taken for a policy):
//!
//! ```toml
//! [[property]]
//! id = "no-self-approval"
//! description = "nobody approves their own request"
//! expect = "never"            # never | only | always
//! requests = '''
//! permit (principal, action == Action::"approveElevation", resource is ElevationRequest)
//! when { resource has requester && resource.requester == principal };
//! '''
//! ```
//!
//! `requests` is one or more Cedar `permit` policies: the requests a property is about
//! are those they permit. The *subject* is what the property judges: by default
//! (`subject = "policies"`) every static policy plus the property's grants; with
//! `subject = "grants"`, only the property's grants and every static `forbid` (the
//! guardrails apply to grants too). Grants are `[[property.grant]]` tables with `role`,
//! `principal` and `scope`, linked like a feed grant (the scope type must be one of
//! the role's `@scope_types`).
//!
//! * `never`: the subject allows none of the requests (they are disjoint).
//! * `only`: every request the subject allows is one of the requests.
//! * `always`: the subject allows every one of the requests.
//!
//! [`restriction`] checks a policy change: the new policies (with one representative
//! grant per role, principal type and scope type) allow nothing the old ones did not.
//!
//! SymCC cannot link templates, so grants are turned into static policies first (the
//! link's JSON form, with the slots filled, read back as a policy).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use cedar_policy::{
    Authorizer, Decision, Effect, EntityUid, Policy, PolicyId, PolicySet, RequestEnv, Schema,
    SlotId, Template, ValidationMode, Validator,
};
use cedar_policy_symcc::solver::{LocalSolver, Solver};
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicySet, Env};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::policy::{Bundle, one_line};

/// The property file's name, next to the policies.
pub const DEFAULT_FILE: &str = "properties.toml";

/// Per-query time limit handed to cvc5, in milliseconds. `--tlimit` would bound the
/// whole solver process, which serves every query of a run.
pub const QUERY_TIME_LIMIT_MS: u64 = 60_000;

/// Everything that stops `prove` from reaching a verdict.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// The property file or the policies are unusable: the user's to fix (exit 3).
    #[error("{0}")]
    Invalid(String),
    /// No solver could be started, or it failed mid-run (exit 1).
    #[error("{0}")]
    Solver(String),
}

/// What a property claims about its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Never,
    Only,
    Always,
}

/// Which policies a property judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    /// Every static policy, plus the property's grants.
    #[default]
    Policies,
    /// The property's grants, and every static `forbid`.
    Grants,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    property: Vec<RawProperty>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProperty {
    id: String,
    #[serde(default)]
    description: Option<String>,
    expect: Expect,
    requests: String,
    #[serde(default)]
    subject: Subject,
    #[serde(default)]
    grant: Vec<GrantSpec>,
}

/// A grant a property assumes: linked like one of the feed's.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    pub role: String,
    pub principal: String,
    pub scope: String,
}

/// One parsed property.
#[derive(Debug, Clone)]
pub struct Property {
    pub id: String,
    pub description: Option<String>,
    pub expect: Expect,
    pub subject: Subject,
    pub requests: PolicySet,
    pub grants: Vec<GrantSpec>,
}

/// Parses a property file (which may hold no property). `origin` names it in messages.
///
/// # Errors
/// The TOML does not have the documented shape, an id repeats, or `requests` is not
/// one or more Cedar `permit` policies without slots.
pub fn parse_properties(text: &str, origin: &str) -> Result<Vec<Property>, ProveError> {
    let raw: RawFile =
        toml::from_str(text).map_err(|e| ProveError::Invalid(format!("{origin}: {e}")))?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for p in raw.property {
        let bad =
            |why: String| ProveError::Invalid(format!("{origin}: property `{}`: {why}", p.id));
        if p.id.trim().is_empty() {
            return Err(ProveError::Invalid(format!(
                "{origin}: a property has an empty `id`"
            )));
        }
        if !seen.insert(p.id.clone()) {
            return Err(bad("the id is used twice".into()));
        }
        let parsed = PolicySet::from_str(&p.requests)
            .map_err(|e| bad(format!("`requests` does not parse: {}", one_line(&e))))?;
        if parsed.templates().next().is_some() {
            return Err(bad(
                "`requests` may not use slots (`?principal`, `?resource`)".into(),
            ));
        }
        if parsed.policies().next().is_none() {
            return Err(bad("`requests` holds no policy".into()));
        }
        if parsed.policies().any(|q| q.effect() != Effect::Permit) {
            return Err(bad(
                "`requests` must be `permit` policies: they describe requests, a `forbid` \
                 describes none"
                    .into(),
            ));
        }
        // Ids of their own, so messages can tell the property's policies from the subject's.
        let mut requests = PolicySet::new();
        for (n, q) in parsed.policies().enumerate() {
            requests
                .add(q.new_id(PolicyId::new(format!("{}#requests{n}", p.id))))
                .map_err(|e| bad(one_line(&e)))?;
        }
        if p.subject == Subject::Grants && p.grant.is_empty() {
            return Err(bad(
                "`subject = \"grants\"` needs at least one `[[property.grant]]`".into(),
            ));
        }
        out.push(Property {
            id: p.id,
            description: p.description,
            expect: p.expect,
            subject: p.subject,
            requests,
            grants: p.grant,
        });
    }
    Ok(out)
}

/// Reads and parses a property file.
///
/// # Errors
/// It cannot be read, or [`parse_properties`] refuses it.
pub fn load_properties(path: &Path) -> Result<Vec<Property>, ProveError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ProveError::Invalid(format!("cannot read `{}`: {e}", path.display())))?;
    parse_properties(&text, &path.display().to_string())
}

/// Where the property file is when none is named: beside the policies.
pub fn default_properties_path(policies: &Path) -> PathBuf {
    if policies.is_dir() {
        policies.join(DEFAULT_FILE)
    } else {
        policies
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join(DEFAULT_FILE)
    }
}

/// A request and entity data on which a property fails.
#[derive(Debug, Clone, Serialize)]
pub struct Counterexample {
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub context: String,
    /// The subject's decision on it (Allow for `never`/`only`, Deny for `always`).
    pub decision: String,
    /// The subject's policies that decided it: the permits that allowed it, or the
    /// forbids that denied it (empty when nothing permitted it).
    pub decided_by: Vec<String>,
    /// Cedar entities JSON of the entities the request involves (actions left out).
    pub entities: Vec<Value>,
}

impl Counterexample {
    fn from_env(env: &Env, subject: &PolicySet) -> Self {
        let req = &env.request;
        let show =
            |uid: Option<&EntityUid>| uid.map_or_else(|| "?".to_owned(), ToString::to_string);
        let answer = Authorizer::new().is_authorized(req, subject, &env.entities);
        let mut decided_by: Vec<String> = answer
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        decided_by.sort();
        let mut entities: Vec<Value> = env
            .entities
            .iter()
            .filter(|e| e.uid().type_name().basename() != "Action")
            .filter_map(|e| e.to_json_value().ok())
            .collect();
        entities.sort_by_key(ToString::to_string);
        Self {
            principal: show(req.principal()),
            action: show(req.action()),
            resource: show(req.resource()),
            context: req
                .context()
                .map_or_else(|| "{}".to_owned(), ToString::to_string),
            decision: match answer.decision() {
                Decision::Allow => "Allow",
                Decision::Deny => "Deny",
            }
            .to_owned(),
            decided_by,
            entities,
        }
    }

    /// Indented lines for people.
    pub fn render(&self) -> String {
        let mut out = format!(
            "    request:  principal {}, action {}, resource {}, context {}\n",
            self.principal, self.action, self.resource, self.context
        );
        let by = if self.decided_by.is_empty() {
            "no policy permits it".to_owned()
        } else {
            self.decided_by.join(", ")
        };
        out.push_str(&format!("    decision: {} ({by})\n", self.decision));
        out.push_str("    entities:\n");
        for e in &self.entities {
            out.push_str(&format!("      {e}\n"));
        }
        out
    }
}

/// One property's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub holds: bool,
    /// Request environments (principal type, action, resource type) checked.
    pub environments: usize,
    pub elapsed_ms: u128,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<Counterexample>,
}

/// How to start the solver: the executable SymCC talks to.
#[derive(Debug, Clone)]
pub struct SolverCommand {
    pub path: PathBuf,
}

impl SolverCommand {
    /// `explicit` (`--solver`), else `$CVC5` (SymCC's own convention), else `cvc5` on
    /// the `PATH`.
    pub fn locate(explicit: Option<&Path>) -> Self {
        let path = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CVC5").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("cvc5"));
        Self { path }
    }

    fn spawn(&self) -> Result<LocalSolver, ProveError> {
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.args([
            "--lang".to_owned(),
            "smt".to_owned(),
            format!("--tlimit-per={QUERY_TIME_LIMIT_MS}"),
        ])
        .kill_on_drop(true);
        LocalSolver::from_command(&mut cmd).map_err(|e| {
            let path = self.path.display();
            let why = match &e {
                cedar_policy_symcc::solver::SolverError::Io(io)
                    if io.kind() == std::io::ErrorKind::NotFound =>
                {
                    format!("`{path}` not found")
                }
                cedar_policy_symcc::solver::SolverError::Io(io) => {
                    format!("`{path}` cannot be started: {io}")
                }
                other => format!("`{path}`: {other}"),
            };
            self.unusable(&why)
        })
    }

    fn unusable(&self, why: &str) -> ProveError {
        ProveError::Solver(format!(
            "no usable cvc5: {why} (name it with --solver or the CVC5 environment variable; \
             tools/install-cvc5.sh installs one)"
        ))
    }
}

/// A SymCC compiler on a running solver, checked to answer before any property runs.
pub struct Prover {
    compiler: CedarSymCompiler<LocalSolver>,
    command: SolverCommand,
}

impl Prover {
    /// Starts the solver and asks it one trivial `(check-sat)`.
    ///
    /// # Errors
    /// The solver cannot be started or does not answer `sat`.
    pub async fn start(command: SolverCommand) -> Result<Self, ProveError> {
        let mut solver = command.spawn()?;
        match solver.check_sat().await {
            Ok(cedar_policy_symcc::solver::Decision::Sat) => {}
            Ok(other) => {
                return Err(command.unusable(&format!(
                    "`{}` answered {other:?} to an empty `(check-sat)`",
                    command.path.display()
                )));
            }
            Err(e) => {
                return Err(command.unusable(&format!(
                    "`{}` did not answer `(check-sat)`: {e}",
                    command.path.display()
                )));
            }
        }
        let compiler = CedarSymCompiler::new(solver)
            .map_err(|e| command.unusable(&format!("cannot set up SymCC: {e}")))?;
        Ok(Self { compiler, command })
    }

    /// The solver executable in use.
    pub fn solver(&self) -> &Path {
        &self.command.path
    }

    /// Checks one property against a bundle's policies.
    ///
    /// # Errors
    /// A grant cannot be linked, a policy does not type-check for SymCC, or the solver
    /// fails.
    pub async fn check(
        &mut self,
        bundle: &Bundle,
        property: &Property,
    ) -> Result<Outcome, ProveError> {
        let started = Instant::now();
        let schema = schema_of(bundle)?;
        let invalid =
            |why: String| ProveError::Invalid(format!("property `{}`: {why}", property.id));
        let subject = subject_set(bundle, property).map_err(invalid)?;
        check_requests_validate(schema, &property.requests).map_err(invalid)?;
        let mut environments = 0;
        // `never` and `always` hold trivially when `requests` match nothing: say so
        // instead of reporting a proof of nothing.
        let mut describes_some_request = property.expect == Expect::Only;
        for env in request_envs(schema) {
            environments += 1;
            let (s, r) = (
                compile(&subject, &env, schema, &property.id)?,
                compile(&property.requests, &env, schema, &property.id)?,
            );
            if !describes_some_request {
                describes_some_request = !self
                    .compiler
                    .check_always_denies_opt(&r)
                    .await
                    .map_err(|e| self.failed(&property.id, &env, &e))?;
            }
            let found = match property.expect {
                Expect::Never => {
                    self.compiler
                        .check_disjoint_with_counterexample_opt(&s, &r)
                        .await
                }
                Expect::Only => {
                    self.compiler
                        .check_implies_with_counterexample_opt(&s, &r)
                        .await
                }
                Expect::Always => {
                    self.compiler
                        .check_implies_with_counterexample_opt(&r, &s)
                        .await
                }
            }
            .map_err(|e| self.failed(&property.id, &env, &e))?;
            if let Some(cex) = found {
                return Ok(Outcome {
                    id: property.id.clone(),
                    description: property.description.clone(),
                    holds: false,
                    environments,
                    elapsed_ms: started.elapsed().as_millis(),
                    counterexample: Some(Counterexample::from_env(&cex, &subject)),
                });
            }
        }
        if !describes_some_request {
            return Err(invalid(
                "`requests` permit no request the schema allows, so the property would hold \
                 for no reason"
                    .into(),
            ));
        }
        Ok(Outcome {
            id: property.id.clone(),
            description: property.description.clone(),
            holds: true,
            environments,
            elapsed_ms: started.elapsed().as_millis(),
            counterexample: None,
        })
    }

    /// Checks that `new` allows nothing `old` does not: static policies, plus one
    /// representative grant of every role of `new` per principal type and scope type
    /// (linked in `old` too when `old` has the role and accepts that scope type).
    ///
    /// # Errors
    /// As [`Self::check`]; also when `new` has no schema.
    pub async fn restriction(
        &mut self,
        new: &Bundle,
        old: &Bundle,
        id: &str,
    ) -> Result<Outcome, ProveError> {
        let started = Instant::now();
        let schema = schema_of(new)?;
        let (new_set, old_set) = representative_sets(new, old, schema)?;
        let mut environments = 0;
        for env in request_envs(schema) {
            environments += 1;
            let n = compile(&new_set, &env, schema, id)?;
            let o = compile(&old_set, &env, schema, id)?;
            let found = self
                .compiler
                .check_implies_with_counterexample_opt(&n, &o)
                .await
                .map_err(|e| self.failed(id, &env, &e))?;
            if let Some(cex) = found {
                return Ok(Outcome {
                    id: id.to_owned(),
                    description: Some("the new policies allow nothing the old ones did not".into()),
                    holds: false,
                    environments,
                    elapsed_ms: started.elapsed().as_millis(),
                    counterexample: Some(Counterexample::from_env(&cex, &new_set)),
                });
            }
        }
        Ok(Outcome {
            id: id.to_owned(),
            description: Some("the new policies allow nothing the old ones did not".into()),
            holds: true,
            environments,
            elapsed_ms: started.elapsed().as_millis(),
            counterexample: None,
        })
    }

    fn failed(&self, id: &str, env: &RequestEnv, e: &cedar_policy_symcc::err::Error) -> ProveError {
        let at = format!(
            "property `{id}`, for {} / {} / {}",
            env.principal(),
            env.action(),
            env.resource()
        );
        match e {
            cedar_policy_symcc::err::Error::SolverError(_)
            | cedar_policy_symcc::err::Error::SolverUnknown => ProveError::Solver(format!(
                "{at}: the solver (`{}`) failed: {}",
                self.command.path.display(),
                one_line(e)
            )),
            _ => ProveError::Invalid(format!("{at}: {}", one_line(e))),
        }
    }
}

/// The schema's request environments in a fixed order, so a run finds the same
/// counterexample every time.
fn request_envs(schema: &Schema) -> Vec<RequestEnv> {
    let mut envs: Vec<RequestEnv> = schema.request_envs().collect();
    envs.sort_by_key(|env| {
        (
            env.action().to_string(),
            env.principal().to_string(),
            env.resource().to_string(),
        )
    });
    envs
}

fn schema_of(bundle: &Bundle) -> Result<&Schema, ProveError> {
    bundle.schema.as_ref().ok_or_else(|| {
        ProveError::Invalid(
            "prove needs the schema (`--schema`): it ranges over the requests it allows".into(),
        )
    })
}

fn compile(
    set: &PolicySet,
    env: &RequestEnv,
    schema: &Schema,
    id: &str,
) -> Result<CompiledPolicySet, ProveError> {
    CompiledPolicySet::compile(set, env, schema).map_err(|e| {
        ProveError::Invalid(format!(
            "property `{id}`: SymCC cannot compile the policies for {} / {} / {}: {}",
            env.principal(),
            env.action(),
            env.resource(),
            one_line(&e)
        ))
    })
}

/// The property's requests must fit the schema, or SymCC's verdict would be about
/// requests that cannot happen.
fn check_requests_validate(schema: &Schema, requests: &PolicySet) -> Result<(), String> {
    let result = Validator::new(schema.clone()).validate(requests, ValidationMode::Strict);
    let errors: Vec<String> = result.validation_errors().map(|e| one_line(e)).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "`requests` does not validate: {}",
            errors.join("; ")
        ))
    }
}

/// The policies a property judges, with its grants linked and made static.
fn subject_set(bundle: &Bundle, property: &Property) -> Result<PolicySet, String> {
    let mut set = PolicySet::new();
    for policy in bundle.statics.policies() {
        if property.subject == Subject::Policies || policy.effect() == Effect::Forbid {
            set.add(policy.clone()).map_err(|e| one_line(&e))?;
        }
    }
    for (n, grant) in property.grants.iter().enumerate() {
        let id = PolicyId::new(format!("{}#grant{n}:{}", property.id, grant.role));
        set.add(link_grant(bundle, grant, id)?)
            .map_err(|e| one_line(&e))?;
    }
    Ok(set)
}

/// Links `grant` as the feed would, refusing what the feed refuses, as a static policy.
fn link_grant(bundle: &Bundle, grant: &GrantSpec, id: PolicyId) -> Result<Policy, String> {
    let role = bundle
        .roles
        .get(&PolicyId::new(&grant.role))
        .ok_or_else(|| format!("grant of `{}`: no such elevation role", grant.role))?;
    let uid = |what: &str, text: &str| {
        EntityUid::from_str(text).map_err(|e| {
            format!(
                "grant of `{}`: {what} `{text}` is not an entity UID: {}",
                grant.role,
                one_line(&e)
            )
        })
    };
    let principal = uid("principal", &grant.principal)?;
    let scope = uid("scope", &grant.scope)?;
    for u in [&principal, &scope] {
        if !bundle.declares(u.type_name()) {
            return Err(format!(
                "grant of `{}`: the schema has no entity type `{}`",
                grant.role,
                u.type_name()
            ));
        }
    }
    if let Some(types) = &role.scope_types
        && !types.contains(scope.type_name())
    {
        return Err(format!(
            "grant of `{}`: scope `{scope}` is not of one of its `@scope_types`",
            grant.role
        ));
    }
    materialize(&role.template, id, principal, scope)
}

/// A template link as a static policy: SymCC analyses static policies only.
fn materialize(
    template: &Template,
    id: PolicyId,
    principal: EntityUid,
    resource: EntityUid,
) -> Result<Policy, String> {
    let mut set = PolicySet::new();
    set.add_template(template.clone())
        .map_err(|e| one_line(&e))?;
    let vals = HashMap::from([
        (SlotId::principal(), principal),
        (SlotId::resource(), resource),
    ]);
    set.link(template.id().clone(), id.clone(), vals)
        .map_err(|e| one_line(&e))?;
    let linked = set
        .policy(&id)
        .ok_or_else(|| format!("link `{id}` vanished from its own set"))?;
    // The JSON form of a link has its slots filled in.
    let json = linked.to_json().map_err(|e| one_line(&e))?;
    Policy::from_json(Some(id), json).map_err(|e| one_line(&e))
}

/// The new and old policy sets with the same representative grants, for [`Prover::restriction`].
fn representative_sets(
    new: &Bundle,
    old: &Bundle,
    schema: &Schema,
) -> Result<(PolicySet, PolicySet), ProveError> {
    let invalid = |why: String| ProveError::Invalid(format!("--against: {why}"));
    let mut new_set = new.statics.clone();
    let mut old_set = old.statics.clone();
    let principals: BTreeSet<String> = schema
        .request_envs()
        .map(|env| env.principal().to_string())
        .collect();
    let all_types: BTreeSet<String> = schema.entity_types().map(ToString::to_string).collect();
    let mut roles: Vec<_> = new.roles.values().collect();
    roles.sort_by(|a, b| a.id.cmp(&b.id));
    for role in roles {
        // A group grant (`principal in ?principal`) reaches the types above a principal.
        let mut grantees = principals.clone();
        if role.principal_in {
            for p in &principals {
                if let Ok(ty) = cedar_policy::EntityTypeName::from_str(p)
                    && let Some(up) = schema.ancestors(&ty)
                {
                    grantees.extend(up.map(ToString::to_string));
                }
            }
        }
        let scopes: BTreeSet<String> = role.scope_types.as_ref().map_or_else(
            || all_types.clone(),
            |types| types.iter().map(ToString::to_string).collect(),
        );
        for p in &grantees {
            for s in &scopes {
                let principal = EntityUid::from_str(&format!("{p}::\"grantee\""))
                    .map_err(|e| invalid(one_line(&e)))?;
                let scope = EntityUid::from_str(&format!("{s}::\"scope\""))
                    .map_err(|e| invalid(one_line(&e)))?;
                let id = PolicyId::new(format!("grant:{}[{p} in {s}]", role.id));
                new_set
                    .add(
                        materialize(&role.template, id.clone(), principal.clone(), scope.clone())
                            .map_err(invalid)?,
                    )
                    .map_err(|e| invalid(one_line(&e)))?;
                let Some(was) = old.roles.get(&role.id) else {
                    continue;
                };
                let accepted = was
                    .scope_types
                    .as_ref()
                    .is_none_or(|types| types.iter().any(|t| t.to_string() == *s));
                if accepted {
                    old_set
                        .add(materialize(&was.template, id, principal, scope).map_err(invalid)?)
                        .map_err(|e| invalid(one_line(&e)))?;
                }
            }
        }
    }
    Ok((new_set, old_set))
}

/// The JSON report of a run.
pub fn report_json(solver: &Path, outcomes: &[Outcome]) -> Value {
    json!({
        "solver": solver.display().to_string(),
        "holds": outcomes.iter().all(|o| o.holds),
        "properties": outcomes,
    })
}

/// Text for one outcome.
pub fn render(outcome: &Outcome) -> String {
    let time = Duration::from_millis(u64::try_from(outcome.elapsed_ms).unwrap_or(u64::MAX));
    let mut out = format!(
        "{} {} ({} environments, {:.2} s)",
        if outcome.holds { "holds " } else { "FAILS " },
        outcome.id,
        outcome.environments,
        time.as_secs_f64()
    );
    if let Some(d) = &outcome.description {
        out.push_str(&format!(": {d}"));
    }
    out.push('\n');
    if let Some(cex) = &outcome.counterexample {
        out.push_str("  counterexample:\n");
        out.push_str(&cex.render());
    }
    out
}

#[cfg(test)]
mod tests;
