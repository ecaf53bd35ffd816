//! Policies, schema and entities: reading them from disk, Cedar validation, and the
//! immutable [`Bundle`] a snapshot is made of (the entities are in [`crate::entities`]).
//!
//! Everything here is built once per reload, off the request path, and never mutated
//! after it is published. Grants are not here: they live in `feed`, which links them
//! against the elevation roles (templates) that a bundle exposes.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    ActionConstraint, Effect, Entities, EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet,
    Schema, SlotId, Template, TemplatePrincipalConstraint, TemplateResourceConstraint,
    ValidationMode, Validator,
};
use jiff::SignedDuration;
use miette::Diagnostic;

use crate::config::Validation;

/// Grants of a role without `@max_duration` are capped here: least privilege by default.
pub const DEFAULT_MAX_DURATION: SignedDuration = SignedDuration::from_hours(8);

/// Everything that can make a policy, schema or entity input unusable.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no `.cedar` files in `{path}`")]
    NoPolicies { path: PathBuf },
    #[error("{location}: cannot parse policies: {message}")]
    Parse { location: String, message: String },
    #[error("{location}: cannot parse schema: {message}")]
    Schema { location: String, message: String },
    #[error("`{path}`: invalid entities: {message}")]
    Entities { path: PathBuf, message: String },
    #[error("policy id `{id}` is used twice ({first} and {second})")]
    DuplicateId {
        id: String,
        first: String,
        second: String,
    },
    #[error("template `{id}` ({location}) cannot be an elevation role: {why}")]
    BadRole {
        id: String,
        location: String,
        why: String,
    },
    #[error("policies do not validate against the schema:\n{}", .errors.join("\n"))]
    Invalid { errors: Vec<String> },
}

/// One input file's path and content, kept so diagnostics can name a line.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// Reads one file.
    ///
    /// # Errors
    /// The file cannot be read or is not UTF-8.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let bytes = std::fs::read(path).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(path, bytes)
    }

    /// A file's content already read as bytes.
    ///
    /// # Errors
    /// The content is not UTF-8 (a [`PolicyError::Read`], as from `read_to_string`).
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, PolicyError> {
        let text = String::from_utf8(bytes).map_err(|_| PolicyError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            ),
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            text,
        })
    }

    /// `path:line:column` of a byte offset, for messages people jump to.
    pub fn location(&self, offset: usize) -> String {
        let before = self.text.get(..offset).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let column = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        format!("{}:{line}:{column}", self.path.display())
    }
}

/// Reads `path`: one `.cedar` file, or every `.cedar` file below a directory in path order.
///
/// # Errors
/// A file cannot be read, or a directory holds no policy file.
pub fn load_policy_files(path: &Path) -> Result<Vec<SourceFile>, PolicyError> {
    let read_err = |source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        return Ok(vec![SourceFile::load(path)?]);
    }
    let mut found = Vec::new();
    collect_cedar_files(path, &mut found).map_err(read_err)?;
    found.sort();
    if found.is_empty() {
        return Err(PolicyError::NoPolicies {
            path: path.to_path_buf(),
        });
    }
    found.iter().map(|p| SourceFile::load(p)).collect()
}

fn collect_cedar_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        // Kubernetes ConfigMap volumes keep the real files under `..data` and
        // timestamped `..2026_...` directories; the visible names are symlinks into them.
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path)?;
        if meta.is_dir() {
            collect_cedar_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "cedar") {
            out.push(path);
        }
    }
    Ok(())
}

/// An elevation role: a permit template with `?principal` and `?resource` slots.
#[derive(Debug, Clone)]
pub struct Role {
    pub id: PolicyId,
    pub template: Template,
    pub max_duration: SignedDuration,
    pub approvals: u32,
    pub description: Option<String>,
    /// Entity types the scope (`?resource`) may take; `None` means any type the schema knows.
    pub scope_types: Option<Vec<EntityTypeName>>,
    /// True when the template says `principal in ?principal`, so a grant to a group
    /// applies to its members and lookups must include the principal's ancestors.
    pub principal_in: bool,
}

impl Role {
    /// Whether this role's template can possibly match `action` (Cedar scope semantics).
    pub fn may_match_action(&self, action: &EntityUid, entities: &Entities) -> bool {
        action_constraint_matches(&self.template.action_constraint(), action, entities)
    }
}

/// Where a policy came from, for diagnostics.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: usize,
}

/// The parsed and validated policies and schema: immutable once built.
#[derive(Debug)]
pub struct Bundle {
    pub schema: Option<Schema>,
    /// Static policies only, with their final ids.
    pub statics: PolicySet,
    pub roles: HashMap<PolicyId, Role>,
    /// Every policy and template id, so grant ids can be kept apart from them.
    pub ids: HashSet<String>,
    /// The entity literals in the conditions of static policies and role templates:
    /// request entity slices must include them. Literals in a scope need no place there:
    /// a scope only compares them with the request's entities or looks them up among
    /// those entities' ancestors, never reads their data.
    pub entity_literals: Vec<EntityUid>,
    pub any_role_principal_in: bool,
    /// The schema's entity types, for checking grants without scanning the schema.
    entity_types: Option<HashSet<EntityTypeName>>,
    pub files: Vec<SourceFile>,
    pub origins: HashMap<PolicyId, Origin>,
    /// Validation findings that did not stop the load (warnings; errors in `warn` mode).
    pub findings: Vec<String>,
}

impl Bundle {
    /// Parses policies and schema, assigns ids, validates, and extracts elevation roles.
    ///
    /// # Errors
    /// A file does not parse, an id repeats, a template is not a usable role, or (in
    /// strict mode) a policy does not validate.
    pub fn build(
        policy_files: Vec<SourceFile>,
        schema_file: Option<&SourceFile>,
        validation: Validation,
    ) -> Result<Self, PolicyError> {
        let schema = schema_file.map(parse_schema).transpose()?;
        let single_file = policy_files.len() == 1;
        let mut all = PolicySet::new();
        let mut statics = PolicySet::new();
        let mut origins: HashMap<PolicyId, Origin> = HashMap::new();
        let mut templates = Vec::new();
        let base = common_dir(&policy_files);
        for (index, file) in policy_files.iter().enumerate() {
            let parsed = PolicySet::from_str(&file.text).map_err(|e| PolicyError::Parse {
                location: first_location(&e, file),
                message: one_line(&e),
            })?;
            let prefix = if single_file {
                String::new()
            } else {
                let rel = file.path.strip_prefix(&base).unwrap_or(&file.path);
                format!("{}#", rel.display())
            };
            let mut named =
                |default: &PolicyId, annotated: Option<&str>| -> Result<PolicyId, PolicyError> {
                    let id = match annotated {
                        Some(id) => PolicyId::new(id),
                        None => PolicyId::new(format!("{prefix}{default}")),
                    };
                    if let Some(prev) = origins.get(&id) {
                        return Err(PolicyError::DuplicateId {
                            id: id.to_string(),
                            first: display_file(&policy_files, prev.file),
                            second: file.path.display().to_string(),
                        });
                    }
                    origins.insert(id.clone(), Origin { file: index });
                    Ok(id)
                };
            for policy in parsed.policies() {
                let id = named(policy.id(), policy.annotation("id"))?;
                let policy = policy.new_id(id);
                statics.add(policy.clone()).map_err(|e| dup(&e))?;
                all.add(policy).map_err(|e| dup(&e))?;
            }
            for template in parsed.templates() {
                let id = named(template.id(), template.annotation("id"))?;
                let template = template.new_id(id);
                all.add_template(template.clone()).map_err(|e| dup(&e))?;
                templates.push((index, template));
            }
        }

        let mut findings = Vec::new();
        if let Some(schema) = &schema {
            let result = Validator::new(schema.clone()).validate(&all, ValidationMode::Strict);
            let errors: Vec<String> = result
                .validation_errors()
                .map(|e| render_finding(e, &policy_files, &origins, e.policy_id()))
                .collect();
            findings.extend(
                result
                    .validation_warnings()
                    .map(|w| render_finding(w, &policy_files, &origins, w.policy_id())),
            );
            if !errors.is_empty() {
                match validation {
                    Validation::Strict => return Err(PolicyError::Invalid { errors }),
                    Validation::Warn => findings.extend(errors),
                }
            }
        }

        let mut roles = HashMap::new();
        let mut template_literals: HashSet<EntityUid> = HashSet::new();
        for (index, template) in templates {
            let bad_role = |why: String| PolicyError::BadRole {
                id: template.id().to_string(),
                location: display_file(&policy_files, index),
                why,
            };
            let est = template
                .to_json()
                .map_err(|e| bad_role(format!("its conditions cannot be inspected: {e}")))?;
            condition_literals(&est, &mut template_literals);
            let role = role_of(&template, schema.as_ref()).map_err(bad_role)?;
            roles.insert(template.id().clone(), role);
        }

        let mut literals: HashSet<EntityUid> = HashSet::new();
        for policy in statics.policies() {
            match policy.to_json() {
                Ok(est) => condition_literals(&est, &mut literals),
                Err(_) => literals.extend(policy.entity_literals()),
            }
        }
        literals.extend(template_literals);
        // As written: `PolicyId`'s `Display` escapes quotes and backslashes.
        let ids = origins
            .keys()
            .map(|id| AsRef::<str>::as_ref(id).to_owned())
            .collect();
        let any_role_principal_in = roles.values().any(|r| r.principal_in);
        let entity_types = schema.as_ref().map(|s| s.entity_types().cloned().collect());
        Ok(Self {
            entity_types,
            schema,
            statics,
            roles,
            ids,
            entity_literals: literals.into_iter().collect(),
            any_role_principal_in,
            files: policy_files,
            origins,
            findings,
        })
    }
}

impl Bundle {
    /// Whether the schema declares entity type `ty` (anything goes without a schema).
    pub fn declares(&self, ty: &EntityTypeName) -> bool {
        self.entity_types
            .as_ref()
            .is_none_or(|types| types.contains(ty))
    }
}

fn dup(e: &cedar_policy::PolicySetError) -> PolicyError {
    PolicyError::Parse {
        location: String::from("policies"),
        message: one_line(e),
    }
}

fn display_file(files: &[SourceFile], index: usize) -> String {
    files
        .get(index)
        .map_or_else(String::new, |f| f.path.display().to_string())
}

fn common_dir(files: &[SourceFile]) -> PathBuf {
    let mut dirs = files.iter().filter_map(|f| f.path.parent());
    let Some(first) = dirs.next() else {
        return PathBuf::new();
    };
    let mut base = first.to_path_buf();
    for dir in dirs {
        while !dir.starts_with(&base) {
            if !base.pop() {
                return PathBuf::new();
            }
        }
    }
    base
}

/// Parses a schema: Cedar's JSON format for `.json` files, its own syntax otherwise.
///
/// # Errors
/// The schema does not parse.
pub fn parse_schema(file: &SourceFile) -> Result<Schema, PolicyError> {
    let is_json = file.path.extension().is_some_and(|e| e == "json");
    if is_json {
        Schema::from_json_str(&file.text).map_err(|e| PolicyError::Schema {
            location: first_location(&e, file),
            message: one_line(&e),
        })
    } else {
        Schema::from_cedarschema_str(&file.text)
            .map(|(schema, _warnings)| schema)
            .map_err(|e| PolicyError::Schema {
                location: first_location(&e, file),
                message: one_line(&e),
            })
    }
}

fn role_of(template: &Template, schema: Option<&Schema>) -> Result<Role, String> {
    if template.effect() != Effect::Permit {
        return Err("an elevation role must be a `permit` template".into());
    }
    let slots: HashSet<&SlotId> = template.slots().collect();
    if !slots.contains(&SlotId::principal()) || !slots.contains(&SlotId::resource()) {
        return Err("it needs both `?principal` and `?resource` slots".into());
    }
    let principal_in = match template.principal_constraint() {
        TemplatePrincipalConstraint::Eq(None) => false,
        TemplatePrincipalConstraint::In(None) | TemplatePrincipalConstraint::IsIn(_, None) => true,
        _ => return Err(
            "its principal scope must be `principal == ?principal` or `principal in ?principal`"
                .into(),
        ),
    };
    if !matches!(
        template.resource_constraint(),
        TemplateResourceConstraint::Eq(None)
            | TemplateResourceConstraint::In(None)
            | TemplateResourceConstraint::IsIn(_, None)
    ) {
        return Err("its resource scope must use `?resource`".into());
    }
    let max_duration = match template.annotation("max_duration") {
        None => DEFAULT_MAX_DURATION,
        Some(text) => parse_duration(text)
            .map_err(|e| format!("`@max_duration(\"{text}\")` is not an ISO 8601 duration: {e}"))?,
    };
    if max_duration <= SignedDuration::ZERO {
        return Err("`@max_duration` must be positive".into());
    }
    let approvals = match template.annotation("approvals") {
        None => 1,
        Some(text) => text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("`@approvals(\"{text}\")` is not a positive number"))?,
    };
    let scope_types = match template.annotation("scope_types") {
        None => None,
        Some(text) => {
            let mut types = Vec::new();
            for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let ty = EntityTypeName::from_str(name).map_err(|_| {
                    format!("`@scope_types` names `{name}`, which is not an entity type name")
                })?;
                if let Some(schema) = schema
                    && !schema.entity_types().any(|t| t == &ty)
                {
                    return Err(format!(
                        "`@scope_types` names `{name}`, which the schema does not declare"
                    ));
                }
                types.push(ty);
            }
            if types.is_empty() {
                return Err("`@scope_types` is empty".into());
            }
            Some(types)
        }
    };
    Ok(Role {
        id: template.id().clone(),
        template: template.clone(),
        max_duration,
        approvals,
        description: template.annotation("description").map(str::to_owned),
        scope_types,
        principal_in,
    })
}

/// Parses an ISO 8601 duration such as `PT4H` or `P1DT2H` into an exact length of time.
///
/// # Errors
/// The text is not a duration, or uses calendar units (years, months, weeks) whose
/// length depends on the date.
pub fn parse_duration(text: &str) -> Result<SignedDuration, String> {
    let span: jiff::Span = text
        .trim()
        .parse()
        .map_err(|e: jiff::Error| e.to_string())?;
    if span.get_years() != 0 || span.get_months() != 0 || span.get_weeks() != 0 {
        return Err("years, months and weeks have no fixed length".into());
    }
    // Days are taken as 24 hours: grants are about elapsed time, not calendars.
    let days = SignedDuration::from_hours(i64::from(span.get_days()) * 24);
    let rest = span
        .days(0)
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .map_err(|e| e.to_string())?;
    days.checked_add(rest)
        .ok_or_else(|| "duration overflows".into())
}

/// Whether an action scope constraint matches `action`, with the hierarchy in `entities`.
pub fn action_constraint_matches(
    constraint: &ActionConstraint,
    action: &EntityUid,
    entities: &Entities,
) -> bool {
    match constraint {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => a == action,
        ActionConstraint::In(groups) => groups
            .iter()
            .any(|g| g == action || entities.is_ancestor_of(g, action)),
    }
}

/// Collects the entity literals in the `conditions` of a policy or template in Cedar's
/// JSON form, conservatively: every `__entity` object anywhere in them.
fn condition_literals(est: &serde_json::Value, out: &mut HashSet<EntityUid>) {
    fn walk(value: &serde_json::Value, out: &mut HashSet<EntityUid>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(uid)) = map.get("__entity")
                    && let (Some(ty), Some(id)) = (
                        uid.get("type").and_then(serde_json::Value::as_str),
                        uid.get("id").and_then(serde_json::Value::as_str),
                    )
                    && let Ok(ty) = ty.parse::<EntityTypeName>()
                {
                    out.insert(EntityUid::from_type_name_and_id(ty, EntityId::new(id)));
                }
                map.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    if let Some(conditions) = est.get("conditions") {
        walk(conditions, out);
    }
}

/// A diagnostic's message and causes on one line, for logs and API answers.
pub fn one_line(diag: &dyn Diagnostic) -> String {
    let mut out = diag.to_string();
    let mut source = std::error::Error::source(diag);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            let _ = write!(out, ": {text}");
        }
        source = cause.source();
    }
    if let Some(help) = diag.help() {
        let _ = write!(out, " (help: {help})");
    }
    if let Some(related) = diag.related() {
        for r in related {
            let _ = write!(out, "; {}", r);
        }
    }
    out.replace('\n', " ")
}

fn first_location(diag: &dyn Diagnostic, file: &SourceFile) -> String {
    let mut offsets = diag.labels().into_iter().flatten().map(|l| l.offset());
    if let Some(offset) = offsets.next() {
        return file.location(offset);
    }
    if let Some(related) = diag.related() {
        for r in related {
            if let Some(label) = r.labels().into_iter().flatten().next() {
                return file.location(label.offset());
            }
        }
    }
    file.path.display().to_string()
}

fn render_finding(
    diag: &dyn Diagnostic,
    files: &[SourceFile],
    origins: &HashMap<PolicyId, Origin>,
    policy: &PolicyId,
) -> String {
    let location = origins
        .get(policy)
        .and_then(|o| files.get(o.file))
        .map_or_else(|| policy.to_string(), |file| first_location(diag, file));
    format!("{location}: {}", one_line(diag))
}

#[cfg(test)]
mod tests;
