//! Declarative policy tests: TOML files of cases that pin what the policies decide,
//! run through the same snapshot build and `engine::decide` as the sidecar.
//!
//! `elevate test` runs them; the shipped suite lives in `policies/tests/`, beside the
//! policies it pins. The policy loader reads only `*.cedar` files, so the test files
//! there are never taken for policies and never trigger a reload.
//!
//! # Format
//!
//! A test file is TOML. Its top-level keys are defaults for every case in the file;
//! a case that sets a key replaces the default as a whole (grants and entities are
//! not merged). Write the defaults before the first `[[case]]`, since TOML puts keys
//! after a table header into that table.
//!
//! ```toml
//! # Defaults for the cases below.
//! at = 2026-12-03T18:00:00Z            # the instant of the decision (RFC 3339)
//! principal = 'User::"alice"'
//!
//! [[grants]]                           # feed grant objects, as in the grant feed
//! id = "g-finops"
//! principal = 'User::"alice"'
//! role = "FinOpsManager"
//! scope = 'Workspace::"ws-1"'
//! not_before = "2026-12-03T17:00:00Z"
//! expires_at = "2026-12-03T19:00:00Z"
//!
//! [[case]]
//! name = "finops manager creates a payment method in its workspace"
//! action = 'Action::"createPaymentMethod"'
//! resource = 'PaymentMethod::"pm-1"'
//! expect = { decision = "Allow", reasons = ["g-finops"], grants = ["g-finops"] }
//!
//! [[case]]
//! name = "the grant does not reach another workspace"
//! action = 'Action::"createPaymentMethod"'
//! resource = 'PaymentMethod::"pm-2"'
//! expect = { decision = "Deny", reasons = [] }
//!
//! [[case]]
//! name = "without the grant"
//! grants = []
//! action = 'Action::"createPaymentMethod"'
//! resource = 'PaymentMethod::"pm-1"'
//! expect = { decision = "Deny" }
//! ```
//!
//! | key | where | what |
//! | --- | --- | --- |
//! | `name` | case, required | unique in its file |
//! | `principal`, `action`, `resource` | case or file, required | UIDs as the decision API takes them: `'User::"alice"'` or `{ type = "User", id = "alice" }` |
//! | `context` | case or file | a table, parsed with the schema like a request's context |
//! | `entities` | case or file | extra entities for this request (Cedar's entity JSON, as TOML or as a JSON string); they may add entities, not replace stored ones |
//! | `grants` | case or file | the grant feed for this case: feed grant objects (`id`, `principal`, `role`, `scope`, `not_before`, `expires_at`, ...) |
//! | `at` | case or file, required | the decision instant, a TOML datetime or an RFC 3339 string with an offset |
//! | `expect.decision` | case, required | `"Allow"` or `"Deny"` |
//! | `expect.reasons` | case | the exact set of determining policy ids (grant ids for grants); `[]` pins "nothing permits it" |
//! | `expect.grants` | case | the exact set of grant ids the answer names |
//! | `expect.errors` | case | the exact set of policy ids that failed to evaluate |
//!
//! An expectation left out is not checked. A grant the feed would reject fails its
//! case, saying why: a test cannot rest on a grant the sidecar would never apply.
//!
//! # Running
//!
//! [`load_files`] parses every file first, so a broken file stops the run before
//! any case is decided. [`run`] then builds one snapshot per distinct grant set with
//! [`Snapshot::build`] (so every grant goes through the feed's checks) and decides
//! each case with [`engine::decide`] at its `at`, as the sidecar would at that
//! instant.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use cedar_policy::Decision;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use crate::config::Validation;
use crate::engine::{self, EvalError};
use crate::feed::{self, FeedError, GrantRejection};
use crate::request::{Body, Query, build_query};
use crate::snapshot::{LoadError, RawInputs, Snapshot};

/// Where the tests live, relative to the policy directory.
pub const DEFAULT_DIR: &str = "tests";

/// The extension of test files found in a directory.
pub const EXTENSION: &str = "toml";

/// A test file or the inputs cannot be used: nothing is decided then.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no test files (`*.{EXTENSION}`) in `{path}`")]
    NoTests { path: PathBuf },
    #[error("{location}: not valid TOML: {message}")]
    Syntax {
        path: PathBuf,
        /// `path:line:column` of the error.
        location: String,
        message: String,
    },
    #[error("`{path}`: {message}")]
    File { path: PathBuf, message: String },
    #[error("`{path}`: {case}: {message}")]
    Case {
        path: PathBuf,
        case: CaseRef,
        message: String,
    },
    #[error("inputs: {0}")]
    Inputs(#[source] LoadError),
    #[error("grants: {0}")]
    Feed(#[source] FeedError),
}

impl SuiteError {
    /// The test file the error is about, if it is about one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::Read { path, .. }
            | Self::NoTests { path }
            | Self::File { path, .. }
            | Self::Syntax { path, .. }
            | Self::Case { path, .. } => Some(path),
            Self::Inputs(_) | Self::Feed(_) => None,
        }
    }

    /// The case the error is about, if it is about one.
    pub fn case(&self) -> Option<&CaseRef> {
        match self {
            Self::Case { case, .. } => Some(case),
            _ => None,
        }
    }
}

/// A case as people find it again: its position in the file and its name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CaseRef {
    /// 1-based position among the file's `[[case]]` tables.
    pub index: usize,
    pub name: Option<String>,
}

impl fmt::Display for CaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "case #{} `{name}`", self.index),
            None => write!(f, "case #{}", self.index),
        }
    }
}

/// One parsed test file.
#[derive(Debug, Clone)]
pub struct TestFile {
    pub path: PathBuf,
    pub cases: Vec<Case>,
}

/// One case with the file's defaults filled in.
#[derive(Debug, Clone)]
pub struct Case {
    /// 1-based position in its file.
    pub index: usize,
    pub name: String,
    pub principal: Value,
    pub action: Value,
    pub resource: Value,
    pub context: Option<Value>,
    pub entities: Option<Value>,
    /// Feed grant objects, raw: the feed checks them when the snapshot is built.
    pub grants: Vec<Value>,
    pub at: Timestamp,
    pub expect: Expect,
}

impl Case {
    fn case_ref(&self) -> CaseRef {
        CaseRef {
            index: self.index,
            name: Some(self.name.clone()),
        }
    }

    fn body(&self) -> Body {
        Body {
            principal: self.principal.clone(),
            action: self.action.clone(),
            resource: self.resource.clone(),
            context: self.context.clone(),
            entities: self.entities.clone(),
        }
    }
}

/// What a case expects; `None` is not checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    pub decision: Decision,
    pub reasons: Option<BTreeSet<String>>,
    pub grants: Option<BTreeSet<String>>,
    pub errors: Option<BTreeSet<String>>,
}

impl serde::Serialize for Expect {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("decision", decision_str(self.decision))?;
        for (key, value) in [
            ("reasons", &self.reasons),
            ("grants", &self.grants),
            ("errors", &self.errors),
        ] {
            if let Some(set) = value {
                map.serialize_entry(key, set)?;
            }
        }
        map.end()
    }
}

/// `Allow` or `Deny`, the decision API's words.
pub fn decision_str(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "Allow",
        Decision::Deny => "Deny",
    }
}

// The file as written. Unknown keys are errors: a misspelt expectation would
// otherwise be a check that silently never runs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    principal: Option<Value>,
    #[serde(default)]
    action: Option<Value>,
    #[serde(default)]
    resource: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    entities: Option<Value>,
    #[serde(default)]
    grants: Option<Vec<Value>>,
    // Cases stay raw until each is read alone, so an error can name its case.
    #[serde(default)]
    case: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    principal: Option<Value>,
    #[serde(default)]
    action: Option<Value>,
    #[serde(default)]
    resource: Option<Value>,
    #[serde(default)]
    context: Option<Value>,
    #[serde(default)]
    entities: Option<Value>,
    #[serde(default)]
    grants: Option<Vec<Value>>,
    expect: RawExpect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    decision: String,
    #[serde(default)]
    reasons: Option<Vec<String>>,
    #[serde(default)]
    grants: Option<Vec<String>>,
    #[serde(default)]
    errors: Option<Vec<String>>,
}

/// Parses one test file; every broken case is reported, not only the first.
///
/// # Errors
/// The text is not TOML, has unknown or mistyped keys, or a case lacks what it needs.
pub fn parse_file(path: &Path, text: &str) -> Result<TestFile, Vec<SuiteError>> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let location = match e.span() {
            Some(span) => line_column(path, text, span.start),
            None => format!("`{}`", path.display()),
        };
        vec![SuiteError::Syntax {
            path: path.to_path_buf(),
            location,
            message: e.message().replace('\n', " "),
        }]
    })?;
    let file_err = |message: String| {
        vec![SuiteError::File {
            path: path.to_path_buf(),
            message,
        }]
    };
    let raw: RawFile = serde_json::from_value(toml_to_json(toml::Value::Table(table)))
        .map_err(|e| file_err(e.to_string()))?;
    let RawFile {
        at,
        principal,
        action,
        resource,
        context,
        entities,
        grants,
        case: raw_cases,
    } = raw;
    let defaults = Defaults {
        at: at
            .as_deref()
            .map(parse_instant)
            .transpose()
            .map_err(&file_err)?,
        principal: principal.as_ref(),
        action: action.as_ref(),
        resource: resource.as_ref(),
        context: context.as_ref(),
        entities: entities.as_ref(),
        grants: grants.as_ref(),
    };
    if raw_cases.is_empty() {
        return Err(file_err("no `[[case]]` in the file".into()));
    }
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    let mut names: HashSet<String> = HashSet::new();
    for (position, value) in raw_cases.into_iter().enumerate() {
        let index = position + 1;
        let name = value.get("name").and_then(Value::as_str).map(str::to_owned);
        let case_err = |message: String| SuiteError::Case {
            path: path.to_path_buf(),
            case: CaseRef {
                index,
                name: name.clone(),
            },
            message,
        };
        let case = serde_json::from_value::<RawCase>(value)
            .map_err(|e| e.to_string())
            .and_then(|c| resolve(c, index, &defaults));
        match case {
            Ok(case) if !names.insert(case.name.clone()) => {
                errors.push(case_err("another case in the file has this name".into()));
            }
            Ok(case) => cases.push(case),
            Err(message) => errors.push(case_err(message)),
        }
    }
    if errors.is_empty() {
        Ok(TestFile {
            path: path.to_path_buf(),
            cases,
        })
    } else {
        Err(errors)
    }
}

/// The file-level defaults a case falls back on.
struct Defaults<'a> {
    at: Option<Timestamp>,
    principal: Option<&'a Value>,
    action: Option<&'a Value>,
    resource: Option<&'a Value>,
    context: Option<&'a Value>,
    entities: Option<&'a Value>,
    grants: Option<&'a Vec<Value>>,
}

fn resolve(raw: RawCase, index: usize, defaults: &Defaults<'_>) -> Result<Case, String> {
    if raw.name.trim().is_empty() {
        return Err("`name` is empty".into());
    }
    let required = |own: Option<Value>, default: Option<&Value>, key: &str| {
        own.or_else(|| default.cloned())
            .ok_or_else(|| format!("`{key}` is missing (neither the case nor the file sets it)"))
    };
    let at = match raw.at.as_deref() {
        Some(text) => parse_instant(text)?,
        None => defaults
            .at
            .ok_or("`at` is missing (neither the case nor the file sets it)")?,
    };
    let entities = match raw.entities.or_else(|| defaults.entities.cloned()) {
        // A JSON string lets an entity list be pasted from Cedar's own files as is.
        Some(Value::String(text)) => Some(
            serde_json::from_str(&text)
                .map_err(|e| format!("`entities` is a string but not JSON: {e}"))?,
        ),
        other => other,
    };
    Ok(Case {
        index,
        principal: required(raw.principal, defaults.principal, "principal")?,
        action: required(raw.action, defaults.action, "action")?,
        resource: required(raw.resource, defaults.resource, "resource")?,
        context: raw.context.or_else(|| defaults.context.cloned()),
        entities,
        grants: raw
            .grants
            .or_else(|| defaults.grants.cloned())
            .unwrap_or_default(),
        at,
        expect: parse_expect(raw.expect)?,
        name: raw.name,
    })
}

fn parse_expect(raw: RawExpect) -> Result<Expect, String> {
    let decision = match raw.decision.as_str() {
        "Allow" => Decision::Allow,
        "Deny" => Decision::Deny,
        other => {
            return Err(format!(
                "`expect.decision` is `{other}`; it must be `Allow` or `Deny`"
            ));
        }
    };
    let set = |list: Option<Vec<String>>| list.map(|l| l.into_iter().collect());
    Ok(Expect {
        decision,
        reasons: set(raw.reasons),
        grants: set(raw.grants),
        errors: set(raw.errors),
    })
}

fn parse_instant(text: &str) -> Result<Timestamp, String> {
    text.parse().map_err(|e: jiff::Error| {
        format!("`at` is `{text}`, not an RFC 3339 instant with an offset: {e}")
    })
}

fn line_column(path: &Path, text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    format!("{}:{line}:{column}", path.display())
}

/// TOML as the JSON the feed and Cedar read. Datetimes become their RFC 3339 text,
/// which is what the feed's timestamps and `at` are parsed from.
fn toml_to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        // Cedar has no floating-point values; a float can only be a mistake, which
        // Cedar then reports for the attribute or context key that holds it.
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .map(|(k, v)| (k, toml_to_json(v)))
                .collect(),
        ),
    }
}

/// Reads the test files at `paths`: a file as it is, a directory's `*.toml` files
/// below it in path order (names starting with `.` are skipped, as for policies).
///
/// # Errors
/// A path cannot be read, a directory holds no test file, or any file is invalid;
/// every invalid file and case is reported.
pub fn load_files(paths: &[PathBuf]) -> Result<Vec<TestFile>, Vec<SuiteError>> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let read_err = |source| SuiteError::Read {
            path: path.clone(),
            source,
        };
        match std::fs::metadata(path) {
            Err(e) => errors.push(read_err(e)),
            Ok(meta) if meta.is_dir() => {
                let mut below = Vec::new();
                match collect_test_files(path, &mut below) {
                    Err(e) => errors.push(read_err(e)),
                    Ok(()) if below.is_empty() => {
                        errors.push(SuiteError::NoTests { path: path.clone() });
                    }
                    Ok(()) => {
                        below.sort();
                        found.extend(below);
                    }
                }
            }
            Ok(_) => found.push(path.clone()),
        }
    }
    let mut files = Vec::new();
    for path in found {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(source) => {
                errors.push(SuiteError::Read { path, source });
                continue;
            }
        };
        match parse_file(&path, &text) {
            Ok(file) => files.push(file),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

fn collect_test_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if std::fs::metadata(&path)?.is_dir() {
            collect_test_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == EXTENSION) {
            out.push(path);
        }
    }
    Ok(())
}

/// What the engine answered for a case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Actual {
    #[serde(serialize_with = "serialize_decision")]
    pub decision: Decision,
    pub reasons: BTreeSet<String>,
    pub grants: BTreeSet<String>,
    pub errors: Vec<EvalError>,
    pub valid_until: Option<Timestamp>,
}

fn serialize_decision<S: serde::Serializer>(d: &Decision, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(decision_str(*d))
}

/// A check of a case that did not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mismatch {
    Decision,
    Reasons,
    Grants,
    Errors,
    /// The feed rejected a grant of the case.
    RejectedGrants,
}

/// One decided case.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    pub file: PathBuf,
    #[serde(rename = "case")]
    pub index: usize,
    pub name: String,
    pub at: Timestamp,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub expected: Expect,
    pub actual: Actual,
    pub rejected_grants: Vec<GrantRejection>,
    pub mismatches: Vec<Mismatch>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }

    /// `FILE: NAME`, how the runner names a case and what `--filter` matches.
    pub fn label(&self) -> String {
        label(&self.file, &self.name)
    }
}

fn label(file: &Path, name: &str) -> String {
    format!("{}: {name}", file.display())
}

/// Every selected case, in file and case order.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub results: Vec<CaseResult>,
    /// Cases left out by the filter.
    pub filtered_out: usize,
    /// Snapshots built: one per distinct grant set.
    pub snapshots: usize,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }
}

/// Decides every case of `files` whose label contains `filter` against `raw` (its
/// grant feed, if any, is not used: each case brings its own grants).
///
/// # Errors
/// The inputs do not build a snapshot, or a case is not a request the schema accepts
/// (every such case is reported); then no case is decided.
pub fn run(
    raw: &RawInputs,
    validation: Validation,
    files: &[TestFile],
    filter: Option<&str>,
) -> Result<Report, Vec<SuiteError>> {
    let base = match build(raw, &[], validation) {
        Ok(s) => s,
        Err(BuildError::Inputs(e)) => return Err(vec![SuiteError::Inputs(e)]),
        Err(BuildError::Feed(e)) => return Err(vec![SuiteError::Feed(e)]),
    };
    let mut selected: Vec<(&TestFile, &Case)> = Vec::new();
    let mut filtered_out = 0;
    for file in files {
        for case in &file.cases {
            if filter.is_none_or(|f| label(&file.path, &case.name).contains(f)) {
                selected.push((file, case));
            } else {
                filtered_out += 1;
            }
        }
    }
    // Every request is checked before any is decided, so a broken case is an
    // invalid suite rather than one failure among passes.
    let errors: Vec<SuiteError> = selected
        .iter()
        .filter_map(|(file, case)| query(&base, file, case).err())
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (position, (_, case)) in selected.iter().enumerate() {
        let key = serde_json::to_string(&case.grants).unwrap_or_default();
        groups.entry(key).or_default().push(position);
    }
    let mut results: Vec<Option<CaseResult>> = vec![None; selected.len()];
    let mut errors = Vec::new();
    for positions in groups.values() {
        let Some((_, first)) = positions.first().and_then(|p| selected.get(*p)) else {
            continue;
        };
        let snapshot = match build(raw, &first.grants, validation) {
            Ok(s) => s,
            Err(BuildError::Inputs(e)) => return Err(vec![SuiteError::Inputs(e)]),
            // The grants are a JSON array whatever they hold, so the envelope parses;
            // should it not, the suite cannot say anything about these cases.
            Err(BuildError::Feed(e)) => {
                return Err(positions
                    .iter()
                    .filter_map(|p| selected.get(*p))
                    .map(|(file, case)| SuiteError::Case {
                        path: file.path.clone(),
                        case: case.case_ref(),
                        message: format!("`grants`: {e}"),
                    })
                    .collect());
            }
        };
        for &position in positions {
            let Some(&(file, case)) = selected.get(position) else {
                continue;
            };
            match query(&snapshot, file, case) {
                Ok(q) => {
                    if let Some(slot) = results.get_mut(position) {
                        *slot = Some(decide(&snapshot, &q, file, case));
                    }
                }
                Err(e) => errors.push(e),
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Report {
        results: results.into_iter().flatten().collect(),
        filtered_out,
        snapshots: groups.len(),
    })
}

/// The snapshot the sidecar would serve with `grants` as its whole feed. The feed
/// document goes through the feed's own parser, as a file or a fetched one would.
fn build(
    raw: &RawInputs,
    grants: &[Value],
    validation: Validation,
) -> Result<Snapshot, BuildError> {
    let document = serde_json::json!({"revision": "policytest", "grants": grants});
    let feed = feed::parse_document(document.to_string().as_bytes()).map_err(BuildError::Feed)?;
    let inputs = RawInputs {
        feed: Some(feed),
        feed_hash: None,
        ..raw.clone()
    };
    Snapshot::build(&inputs, validation).map_err(BuildError::Inputs)
}

enum BuildError {
    Inputs(LoadError),
    Feed(FeedError),
}

fn query(snapshot: &Snapshot, file: &TestFile, case: &Case) -> Result<Query, SuiteError> {
    build_query(
        case.body(),
        &snapshot.bundle,
        &snapshot.store,
        snapshot.validation,
    )
    .map_err(|e| SuiteError::Case {
        path: file.path.clone(),
        case: case.case_ref(),
        message: e.to_string(),
    })
}

fn decide(snapshot: &Snapshot, query: &Query, file: &TestFile, case: &Case) -> CaseResult {
    let outcome = engine::decide(snapshot, query, case.at);
    let actual = Actual {
        decision: outcome.decision,
        reasons: outcome
            .reasons
            .iter()
            .map(|r| crate::feed::raw_id(r).to_owned())
            .collect(),
        grants: outcome
            .grants
            .iter()
            .map(|g| crate::feed::raw_id(&g.id).to_owned())
            .collect(),
        errors: outcome.errors.clone(),
        valid_until: outcome.valid_until,
    };
    let expect = &case.expect;
    let error_ids: BTreeSet<String> = actual.errors.iter().map(|e| e.policy_id.clone()).collect();
    let mut mismatches = Vec::new();
    if expect.decision != actual.decision {
        mismatches.push(Mismatch::Decision);
    }
    let differs = |expected: &Option<BTreeSet<String>>, actual: &BTreeSet<String>| {
        expected.as_ref().is_some_and(|e| e != actual)
    };
    if differs(&expect.reasons, &actual.reasons) {
        mismatches.push(Mismatch::Reasons);
    }
    if differs(&expect.grants, &actual.grants) {
        mismatches.push(Mismatch::Grants);
    }
    if differs(&expect.errors, &error_ids) {
        mismatches.push(Mismatch::Errors);
    }
    let rejected_grants = snapshot.grants.rejected.clone();
    if !rejected_grants.is_empty() {
        mismatches.push(Mismatch::RejectedGrants);
    }
    CaseResult {
        file: file.path.clone(),
        index: case.index,
        name: case.name.clone(),
        at: case.at,
        principal: query.principal.to_string(),
        action: query.action.to_string(),
        resource: query.resource.to_string(),
        expected: expect.clone(),
        actual,
        rejected_grants,
        mismatches,
    }
}

#[cfg(test)]
mod tests;
