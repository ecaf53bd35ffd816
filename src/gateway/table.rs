//! The route table: a TOML file that maps an HTTP method and a path pattern with
//! named segments to a Cedar request (an action, a resource UID built from the
//! segments with its parent chain, context additions), checked against the schema,
//! and matched against the paths of the requests a gateway asks about.
//!
//! ```toml
//! headers = ["x-request-id"]          # copied into `context.http.headers`
//!
//! [[route]]
//! method = "GET"                      # or a list: ["PUT", "PATCH"]
//! path = "/api/workspaces/{ws}/payment-methods/{pm}"
//! action = 'Action::"readPaymentMethod"'
//! resource = 'PaymentMethod::"{pm}"'
//! parents = ['Workspace::"{ws}"']     # the resource's parent, its parent's parent, ...
//! context = { channel = "api" }       # optional, values may use `{ws}` too
//! ```
//!
//! INVARIANT: a [`RouteTable`] is complete and consistent once built: every
//! placeholder used in a UID or a context value is a named segment of its route's
//! path, no two routes match the same method and path shape, and (when a schema is
//! given) every route's action exists, its resource type is one the action applies
//! to, its per-request entities and a sample context conform. A request that matches
//! no route gets no route: the caller denies it.

use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, Schema,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::policy::one_line;

/// Context attributes elevate sets itself; a route's `context` may not name them.
pub const RESERVED_CONTEXT: [&str; 2] = ["source_ip", "http"];

/// A route table that cannot be used, or one route of it that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("not valid TOML at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("`headers`: `{0}` is not an HTTP header name")]
    Header(String),
    #[error("`headers`: `{0}` is listed twice")]
    DuplicateHeader(String),
    /// One route is wrong; `index` counts `[[route]]` tables from 1, as a reader does.
    #[error("route {index} (`{name}`): {source}")]
    Route {
        index: usize,
        name: String,
        #[source]
        source: RouteError,
    },
    #[error(
        "routes {first} and {second} both match `{method} {shape}`; make one of the paths more specific"
    )]
    Ambiguous {
        first: usize,
        second: usize,
        method: String,
        shape: String,
    },
}

/// What is wrong with one route.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    #[error("`method` is empty; give a method like `GET` or a list")]
    NoMethod,
    #[error("`method`: `{0}` is not an HTTP method like `GET` (upper case)")]
    Method(String),
    #[error("`path` `{path}`: {reason}")]
    Path { path: String, reason: String },
    #[error("`{field}` `{value}`: {reason}")]
    Template {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("`{field}`: `{placeholder}` is not a named segment of `path`")]
    UnknownPlaceholder {
        field: &'static str,
        placeholder: String,
    },
    #[error("`action` `{0}` is not an action UID like `Action::\"readProject\"`")]
    NotAnAction(String),
    #[error("`action` `{0}` is not in the schema")]
    UnknownAction(String),
    #[error(
        "`resource`: the schema does not let `{action}` apply to `{found}`; it applies to {allowed}"
    )]
    ResourceType {
        action: String,
        found: String,
        allowed: String,
    },
    #[error("the schema lets `{0}` apply to no principal type")]
    NoPrincipal(String),
    #[error(
        "the per-request resource entity and its `parents` do not conform to the schema \
         (an entity type with required attributes must come from the entity store: end the \
         chain before it): {0}"
    )]
    Entities(String),
    #[error("`context`: `{0}` is set by elevate itself; choose another name")]
    ReservedContext(String),
    #[error("the context elevate builds does not conform to the schema for this action: {0}")]
    Context(String),
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// A named segment: the value is bound to the placeholder of this index.
    Param(usize),
}

/// Text with `{name}` placeholders, each resolved to a path parameter's index.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Template(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Param(usize),
}

impl Template {
    /// Splits `text` at `{name}` placeholders; every name must be in `params`.
    fn parse(field: &'static str, text: &str, params: &[String]) -> Result<Self, RouteError> {
        let bad = |reason: &str| RouteError::Template {
            field,
            value: text.to_owned(),
            reason: reason.to_owned(),
        };
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            let (before, tail) = rest.split_at(open);
            if tail.starts_with('}') {
                return Err(bad("has a `}` without its `{`"));
            }
            let Some(close) = tail.find('}') else {
                return Err(bad("has a `{` without its `}`"));
            };
            let name = tail.get(1..close).unwrap_or_default();
            if !is_name(name) {
                return Err(bad(
                    "has a placeholder that is not `{name}` (letters, digits and `_`)",
                ));
            }
            let index = params.iter().position(|p| p == name).ok_or_else(|| {
                RouteError::UnknownPlaceholder {
                    field,
                    placeholder: format!("{{{name}}}"),
                }
            })?;
            if !before.is_empty() {
                pieces.push(Piece::Text(before.to_owned()));
            }
            pieces.push(Piece::Param(index));
            rest = tail.get(close + 1..).unwrap_or_default();
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self(pieces))
    }

    fn render(&self, values: &[String]) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Param(i) => out.push_str(values.get(*i).map_or("", String::as_str)),
            }
        }
        out
    }

    fn has_params(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Piece::Param(_)))
    }
}

/// A UID whose id is a template: `PaymentMethod::"{pm}"`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UidTemplate {
    ty: EntityTypeName,
    id: Template,
}

impl UidTemplate {
    fn parse(field: &'static str, text: &str, params: &[String]) -> Result<Self, RouteError> {
        // Parsed as a whole UID first, so the type and the quoting follow Cedar's rules;
        // the placeholders are then found in the unescaped id. Values are substituted
        // into the id, never into UID syntax, so a segment holding `"` cannot inject.
        let uid = EntityUid::from_str(text).map_err(|e| RouteError::Template {
            field,
            value: text.to_owned(),
            reason: format!(
                "is not an entity UID like `Workspace::\"{{ws}}\"`: {}",
                one_line(&e)
            ),
        })?;
        Ok(Self {
            ty: uid.type_name().clone(),
            id: Template::parse(field, uid.id().unescaped(), params)?,
        })
    }

    fn render(&self, values: &[String]) -> EntityUid {
        EntityUid::from_type_name_and_id(self.ty.clone(), EntityId::new(self.id.render(values)))
    }
}

/// A context value from the route table: strings may hold placeholders.
#[derive(Debug, Clone, PartialEq)]
enum ContextValue {
    Plain(Value),
    Text(Template),
    List(Vec<ContextValue>),
    Record(Vec<(String, ContextValue)>),
}

impl ContextValue {
    fn parse(value: Value, params: &[String]) -> Result<Self, RouteError> {
        Ok(match value {
            Value::String(text) => {
                let template = Template::parse("context", &text, params)?;
                if template.has_params() {
                    Self::Text(template)
                } else {
                    Self::Plain(Value::String(text))
                }
            }
            Value::Array(items) => Self::List(
                items
                    .into_iter()
                    .map(|v| Self::parse(v, params))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Self::Record(
                map.into_iter()
                    .map(|(k, v)| Ok((k, Self::parse(v, params)?)))
                    .collect::<Result<_, RouteError>>()?,
            ),
            other => Self::Plain(other),
        })
    }

    fn render(&self, values: &[String]) -> Value {
        match self {
            Self::Plain(v) => v.clone(),
            Self::Text(t) => Value::String(t.render(values)),
            Self::List(items) => Value::Array(items.iter().map(|v| v.render(values)).collect()),
            Self::Record(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.render(values)))
                    .collect(),
            ),
        }
    }
}

/// One route: which requests it matches and the Cedar request it makes of them.
#[derive(Debug, Clone)]
pub struct Route {
    /// `name` from the file, else `"METHOD /path/{pattern}"`: what answers and logs say.
    pub name: String,
    methods: Vec<String>,
    segments: Vec<Segment>,
    params: Vec<String>,
    pub action: EntityUid,
    resource: UidTemplate,
    parents: Vec<UidTemplate>,
    context: Vec<(String, ContextValue)>,
}

/// A request matched to a route, with the values of its named segments.
#[derive(Debug, Clone)]
pub struct Matched<'a> {
    pub route: &'a Route,
    /// In the order of the path's placeholders.
    values: Vec<String>,
}

/// One entity elevate makes for a request: the resource, or a link of its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    pub uid: EntityUid,
    pub parent: Option<EntityUid>,
}

impl Matched<'_> {
    /// The resource UID.
    pub fn resource(&self) -> EntityUid {
        self.route.resource.render(&self.values)
    }

    /// The resource and each parent in order, each with the UID of its own parent (the
    /// next one; the last has none).
    pub fn chain(&self) -> Vec<ChainLink> {
        let mut uids = vec![self.resource()];
        uids.extend(self.route.parents.iter().map(|p| p.render(&self.values)));
        let parents: Vec<Option<EntityUid>> = uids
            .iter()
            .skip(1)
            .cloned()
            .map(Some)
            .chain([None])
            .collect();
        uids.into_iter()
            .zip(parents)
            .map(|(uid, parent)| ChainLink { uid, parent })
            .collect()
    }

    /// The route's context additions with this request's values.
    pub fn context(&self) -> serde_json::Map<String, Value> {
        self.route
            .context
            .iter()
            .map(|(k, v)| (k.clone(), v.render(&self.values)))
            .collect()
    }

    /// The named segments and their values, for logs and answers.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.route
            .params
            .iter()
            .map(String::as_str)
            .zip(self.values.iter().map(String::as_str))
    }
}

/// The parsed, checked route table.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    /// Lowercase header names copied into `context.http.headers`.
    headers: Vec<hyper::header::HeaderName>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default, rename = "route")]
    routes: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    method: Methods,
    path: String,
    action: String,
    resource: String,
    #[serde(default)]
    parents: Vec<String>,
    #[serde(default)]
    context: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Methods {
    One(String),
    Many(Vec<String>),
}

impl RouteTable {
    /// Parses a route table and checks it, against `schema` when there is one.
    ///
    /// # Errors
    /// The text is not TOML of this shape, a route is wrong (the error names the
    /// first wrong one), or two routes match the same requests.
    pub fn parse(text: &str, schema: Option<&Schema>) -> Result<Self, TableError> {
        let raw: RawTable = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((0, 0), |span| line_column(text, span.start));
            TableError::Syntax {
                line,
                column,
                message: e.message().to_owned(),
            }
        })?;
        let mut headers: Vec<hyper::header::HeaderName> = Vec::new();
        for name in raw.headers {
            let header = hyper::header::HeaderName::from_str(&name)
                .map_err(|_| TableError::Header(name.clone()))?;
            if headers.contains(&header) {
                return Err(TableError::DuplicateHeader(name));
            }
            headers.push(header);
        }
        let mut routes: Vec<Route> = Vec::with_capacity(raw.routes.len());
        for (i, raw) in raw.routes.into_iter().enumerate() {
            let index = i + 1;
            let name = raw
                .name
                .clone()
                .unwrap_or_else(|| format!("{} {}", raw.method.describe(), raw.path));
            let route = Route::parse(raw, name.clone(), &headers, schema).map_err(|source| {
                TableError::Route {
                    index,
                    name,
                    source,
                }
            })?;
            for (j, other) in routes.iter().enumerate() {
                if route.segments_shape() == other.segments_shape()
                    && let Some(method) = route.methods.iter().find(|m| other.methods.contains(m))
                {
                    return Err(TableError::Ambiguous {
                        first: j + 1,
                        second: index,
                        method: method.clone(),
                        shape: route.shape(),
                    });
                }
            }
            routes.push(route);
        }
        Ok(Self { routes, headers })
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The headers a request's context carries.
    pub fn headers(&self) -> &[hyper::header::HeaderName] {
        &self.headers
    }

    /// The route for `method` and the decoded path `segments`, if any.
    ///
    /// Literal segments beat named ones, from the left, so `/api/workspaces/new`
    /// wins over `/api/workspaces/{ws}`. A `HEAD` matches a `GET` route unless a route
    /// names `HEAD` for the same path.
    pub fn find(&self, method: &str, segments: &[String]) -> Option<Matched<'_>> {
        self.find_exact(method, segments).or_else(|| {
            (method == "HEAD")
                .then(|| self.find_exact("GET", segments))
                .flatten()
        })
    }

    fn find_exact(&self, method: &str, segments: &[String]) -> Option<Matched<'_>> {
        let mut best: Option<(Vec<bool>, &Route)> = None;
        for route in &self.routes {
            if route.segments.len() != segments.len() || !route.methods.iter().any(|m| m == method)
            {
                continue;
            }
            let matches = route.segments.iter().zip(segments).all(|(s, v)| match s {
                Segment::Literal(l) => l == v,
                Segment::Param(_) => true,
            });
            if !matches {
                continue;
            }
            let rank = route.segments_shape_rank();
            if best.as_ref().is_none_or(|(b, _)| rank > *b) {
                best = Some((rank, route));
            }
        }
        let (_, route) = best?;
        let mut values = vec![String::new(); route.params.len()];
        for (segment, value) in route.segments.iter().zip(segments) {
            if let Segment::Param(i) = segment
                && let Some(slot) = values.get_mut(*i)
            {
                slot.clone_from(value);
            }
        }
        Some(Matched { route, values })
    }
}

impl Methods {
    fn describe(&self) -> String {
        match self {
            Self::One(m) => m.clone(),
            Self::Many(ms) => ms.join("|"),
        }
    }
}

impl Route {
    fn parse(
        raw: RawRoute,
        name: String,
        headers: &[hyper::header::HeaderName],
        schema: Option<&Schema>,
    ) -> Result<Self, RouteError> {
        let methods = match raw.method {
            Methods::One(m) => vec![m],
            Methods::Many(ms) => ms,
        };
        if methods.is_empty() {
            return Err(RouteError::NoMethod);
        }
        for m in &methods {
            let token = !m.is_empty() && m.bytes().all(|b| b.is_ascii_uppercase() || b == b'-');
            if !token {
                return Err(RouteError::Method(m.clone()));
            }
        }
        let mut methods = methods;
        methods.dedup();
        let (segments, params) = parse_pattern(&raw.path)?;
        let action = EntityUid::from_str(&raw.action)
            .ok()
            .filter(|uid| uid.type_name().basename() == "Action")
            .ok_or_else(|| RouteError::NotAnAction(raw.action.clone()))?;
        let resource = UidTemplate::parse("resource", &raw.resource, &params)?;
        let parents = raw
            .parents
            .iter()
            .map(|p| UidTemplate::parse("parents", p, &params))
            .collect::<Result<Vec<_>, _>>()?;
        let mut context = Vec::new();
        for (key, value) in raw.context {
            if RESERVED_CONTEXT.contains(&key.as_str()) {
                return Err(RouteError::ReservedContext(key));
            }
            let json = serde_json::to_value(value).unwrap_or(Value::Null);
            context.push((key, ContextValue::parse(json, &params)?));
        }
        let route = Self {
            name,
            methods,
            segments,
            params,
            action,
            resource,
            parents,
            context,
        };
        if let Some(schema) = schema {
            route.validate(schema, headers)?;
        }
        Ok(route)
    }

    /// Checks the route against the schema with sample values for its segments:
    /// the request it makes must be one the schema accepts, whatever the values.
    fn validate(
        &self,
        schema: &Schema,
        headers: &[hyper::header::HeaderName],
    ) -> Result<(), RouteError> {
        let action = self.action.to_string();
        if !schema.actions().any(|a| a == &self.action) {
            return Err(RouteError::UnknownAction(action));
        }
        let allowed: Vec<&EntityTypeName> = schema
            .resources_for_action(&self.action)
            .map(Iterator::collect)
            .unwrap_or_default();
        if !allowed.contains(&&self.resource.ty) {
            let allowed = if allowed.is_empty() {
                "no resource type".to_owned()
            } else {
                allowed
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(RouteError::ResourceType {
                action,
                found: self.resource.ty.to_string(),
                allowed,
            });
        }
        let principal_type = schema
            .principals_for_action(&self.action)
            .and_then(|mut types| types.next().cloned())
            .ok_or_else(|| RouteError::NoPrincipal(action.clone()))?;

        let sample: Vec<String> = self.params.iter().map(|p| format!("sample-{p}")).collect();
        let matched = Matched {
            route: self,
            values: sample,
        };
        let chain = matched.chain();
        if chain.len() > 1 {
            // The last link is only named as a parent, never made: it may be any type.
            let made: Vec<Entity> = chain
                .iter()
                .take(chain.len() - 1)
                .map(|link| {
                    Entity::new_no_attrs(link.uid.clone(), link.parent.iter().cloned().collect())
                })
                .collect();
            Entities::from_entities(made, Some(schema))
                .map_err(|e| RouteError::Entities(one_line(&e)))?;
        }

        let mut context = matched.context();
        context.insert("source_ip".into(), json!("127.0.0.1"));
        let sample_headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|h| (h.as_str().to_owned(), json!("sample")))
            .collect();
        context.insert(
            "http".into(),
            json!({"method": "GET", "path": "/", "query": "", "headers": sample_headers}),
        );
        let context =
            Context::from_json_value(Value::Object(context), Some((schema, &self.action)))
                .map_err(|e| RouteError::Context(one_line(&e)))?;
        let principal = EntityUid::from_type_name_and_id(principal_type, EntityId::new("sample"));
        Request::new(
            principal,
            self.action.clone(),
            matched.resource(),
            context,
            Some(schema),
        )
        .map_err(|e| RouteError::Context(one_line(&e)))?;
        Ok(())
    }

    /// What the route matches regardless of placeholder names: literals, and `*` for
    /// named segments.
    fn segments_shape(&self) -> Vec<Option<&str>> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => Some(l.as_str()),
                Segment::Param(_) => None,
            })
            .collect()
    }

    /// Literal segments rank above named ones, from the left.
    fn segments_shape_rank(&self) -> Vec<bool> {
        self.segments
            .iter()
            .map(|s| matches!(s, Segment::Literal(_)))
            .collect()
    }

    fn shape(&self) -> String {
        let mut out = String::new();
        for s in &self.segments {
            out.push('/');
            match s {
                Segment::Literal(l) => out.push_str(l),
                Segment::Param(i) => {
                    out.push('{');
                    out.push_str(self.params.get(*i).map_or("", String::as_str));
                    out.push('}');
                }
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }
}

/// `/a/{b}/c` into segments and the placeholder names in order.
fn parse_pattern(path: &str) -> Result<(Vec<Segment>, Vec<String>), RouteError> {
    let bad = |reason: &str| RouteError::Path {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad("must start with `/`"));
    };
    if path.contains(['?', '#']) {
        return Err(bad("must not hold a query or a fragment"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut segments = Vec::new();
    let mut params: Vec<String> = Vec::new();
    if rest.is_empty() {
        return Ok((segments, params));
    }
    for raw in rest.split('/') {
        if let Some(name) = raw.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            if !is_name(name) {
                return Err(bad(&format!(
                    "`{raw}` is not a named segment like `{{ws}}` (letters, digits and `_`)"
                )));
            }
            if params.iter().any(|p| p == name) {
                return Err(bad(&format!("names `{{{name}}}` twice")));
            }
            segments.push(Segment::Param(params.len()));
            params.push(name.to_owned());
        } else if raw.contains(['{', '}']) {
            return Err(bad(&format!(
                "`{raw}`: a named segment must be a whole segment, like `/{{ws}}/`"
            )));
        } else if raw.is_empty() || raw == "." || raw == ".." {
            return Err(bad("has an empty, `.` or `..` segment"));
        } else {
            let decoded = super::origin::percent_decode(raw)
                .ok_or_else(|| bad(&format!("`{raw}` is not valid percent-encoded UTF-8")))?;
            segments.push(Segment::Literal(decoded));
        }
    }
    Ok((segments, params))
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A context value for the headers record: the header's values joined with `, `,
/// as HTTP combines repeated fields; `None` if a value is not visible ASCII text.
pub fn header_value(
    values: hyper::header::GetAll<'_, hyper::header::HeaderValue>,
) -> Option<String> {
    let mut out: Option<String> = None;
    for value in values {
        let text = value.to_str().ok()?;
        match &mut out {
            Some(joined) => {
                joined.push_str(", ");
                joined.push_str(text);
            }
            None => out = Some(text.to_owned()),
        }
    }
    out
}
