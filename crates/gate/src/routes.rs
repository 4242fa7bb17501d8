//! The route table: configuration compiled into matchers from requests to operations.
//!
//! An HTTP request maps by method and canonical path (below its upstream's mount) to an
//! action, a resource and constraint inputs; an MCP `tools/call` maps by tool name. Whatever
//! does not map is denied, never forwarded. Configuration errors are found at start, not on
//! the first request: overlapping routes, unknown captures, resources that cannot be built.

use std::collections::{BTreeMap, HashSet};

use mandate_core::scope::{Action, Location, Prohibitions, ResourcePath, ResourcePattern, Scope};
use serde_json::{Map, Value};

use crate::config::{GateConfig, RouteConfig, ToolConfig, UpstreamConfig, UpstreamKind};
use crate::error::GateError;
use crate::path::{self, CanonicalPath, Query};

/// All upstreams with their routes, longest mount first.
#[derive(Debug)]
pub(crate) struct RouteTable {
    upstreams: Vec<Upstream>,
}

/// One upstream and what the gate lets through to it.
#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) name: String,
    pub(crate) kind: UpstreamKind,
    /// For `http`: the base URL without a trailing `/`; for `mcp`: the endpoint.
    pub(crate) url: String,
    pub(crate) mount: CanonicalPath,
    routes: Vec<HttpRoute>,
    tools: BTreeMap<String, ToolRoute>,
}

#[derive(Debug)]
struct HttpRoute {
    method: String,
    template: Vec<Segment>,
    action: String,
    resource: Template,
    inputs: Vec<(String, Source)>,
}

/// One MCP tool's mapping.
#[derive(Debug)]
pub(crate) struct ToolRoute {
    action: String,
    resource: Template,
    inputs: Vec<(String, Source)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Capture(String),
}

/// A resource template: text and `{…}` placeholders.
#[derive(Debug)]
struct Template {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    Text(String),
    /// A captured path segment (HTTP) or a member path below `arguments` (MCP).
    Var(Vec<String>),
}

/// Where a constraint input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Query(String),
    Body(Vec<String>),
    Arguments(Vec<String>),
}

/// A request mapped to an operation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mapped {
    pub(crate) action: String,
    pub(crate) resource: String,
    pub(crate) inputs: Map<String, Value>,
}

/// Why a request could not be turned into an operation although a route matched: its inputs
/// are malformed. Messages are safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MapError {
    /// A value needed for the resource is missing or not a plain string or integer.
    #[error("`{0}` must be a string or an integer")]
    BadValue(String),
    /// The built resource is not a valid resource path.
    #[error("the resource built from the request is not a valid resource path")]
    BadResource,
    /// A declared constraint input is absent from the request.
    #[error("the request must carry `{0}`: a constraint of this route depends on it")]
    MissingInput(String),
    /// A query parameter used as an input appears twice, or the query is malformed.
    #[error("the query parameter `{0}` must appear at most once")]
    Query(String),
}

impl RouteTable {
    /// Compiles and checks the configuration.
    pub(crate) fn compile(config: &GateConfig) -> Result<Self, GateError> {
        let mut upstreams = Vec::new();
        let mut names = HashSet::new();
        for u in &config.upstreams {
            if !names.insert(u.name.clone()) {
                return Err(config_error(format!(
                    "upstream `{}` is defined twice",
                    u.name
                )));
            }
            upstreams.push(compile_upstream(u)?);
        }
        if upstreams.is_empty() {
            return Err(config_error(
                "at least one `[[upstream]]` is required".into(),
            ));
        }
        for (i, a) in upstreams.iter().enumerate() {
            for b in upstreams.iter().skip(i + 1) {
                if a.mount == b.mount {
                    return Err(config_error(format!(
                        "upstreams `{}` and `{}` have the same mount `{}`",
                        a.name,
                        b.name,
                        a.mount.encoded()
                    )));
                }
            }
        }
        let mut table = Self { upstreams };
        for r in &config.routes {
            let index = table.pick(r.upstream.as_deref(), UpstreamKind::Http, "route")?;
            let route = compile_route(r)?;
            let upstream = table
                .upstreams
                .get_mut(index)
                .ok_or_else(|| config_error("internal error: upstream index".into()))?;
            if let Some(other) = upstream.routes.iter().find(|o| overlaps(o, &route)) {
                return Err(config_error(format!(
                    "routes `{} {}` and `{} {}` can match the same request",
                    r.method,
                    r.path,
                    other.method,
                    template_text(&other.template)
                )));
            }
            upstream.routes.push(route);
        }
        for t in &config.tools {
            let index = table.pick(t.upstream.as_deref(), UpstreamKind::Mcp, "tool")?;
            let tool = compile_tool(t)?;
            let upstream = table
                .upstreams
                .get_mut(index)
                .ok_or_else(|| config_error("internal error: upstream index".into()))?;
            if upstream.tools.insert(t.name.clone(), tool).is_some() {
                return Err(config_error(format!("tool `{}` is mapped twice", t.name)));
            }
        }
        // Longest mount first, so the most specific upstream wins.
        table
            .upstreams
            .sort_by_key(|u| std::cmp::Reverse(u.mount.segments().len()));
        Ok(table)
    }

    /// The upstream serving `path`, and the path below its mount. MCP upstreams serve exactly
    /// their mount.
    pub(crate) fn upstream_for(&self, path: &CanonicalPath) -> Option<(&Upstream, CanonicalPath)> {
        self.upstreams.iter().find_map(|u| {
            let serves = match u.kind {
                UpstreamKind::Http => path.starts_with(&u.mount),
                UpstreamKind::Mcp => *path == u.mount,
            };
            serves.then(|| (u, path.strip(u.mount.segments().len())))
        })
    }

    /// Every MCP upstream (for the path-suffixed RFC 9728 metadata).
    pub(crate) fn mcp_upstreams(&self) -> impl Iterator<Item = &Upstream> {
        self.upstreams
            .iter()
            .filter(|u| u.kind == UpstreamKind::Mcp)
    }

    fn pick(&self, name: Option<&str>, kind: UpstreamKind, what: &str) -> Result<usize, GateError> {
        let kind_name = match kind {
            UpstreamKind::Http => "http",
            UpstreamKind::Mcp => "mcp",
        };
        match name {
            Some(name) => {
                let (i, u) = self
                    .upstreams
                    .iter()
                    .enumerate()
                    .find(|(_, u)| u.name == name)
                    .ok_or_else(|| config_error(format!("{what}: unknown upstream `{name}`")))?;
                if u.kind != kind {
                    return Err(config_error(format!(
                        "{what}: upstream `{name}` is not of kind `{kind_name}`"
                    )));
                }
                Ok(i)
            }
            None => {
                let mut of_kind = self
                    .upstreams
                    .iter()
                    .enumerate()
                    .filter(|(_, u)| u.kind == kind);
                match (of_kind.next(), of_kind.next()) {
                    (Some((i, _)), None) => Ok(i),
                    _ => Err(config_error(format!(
                        "{what}: name its `upstream` (there is not exactly one `{kind_name}` upstream)"
                    ))),
                }
            }
        }
    }
}

impl Upstream {
    /// The operation an HTTP request maps to; `None` when no route matches. `body` is the JSON
    /// body when the route needs body inputs (see [`Upstream::needs_body`]).
    pub(crate) fn map_http(
        &self,
        method: &str,
        rel: &CanonicalPath,
        query: &Query,
        body: Option<&Value>,
    ) -> Option<Result<Mapped, MapError>> {
        let (route, captures) = self.match_http(method, rel)?;
        Some(route.map(&captures, query, body))
    }

    /// Whether the route matching `method rel` takes inputs from the body (so the body must be
    /// read and parsed before deciding); `None` when no route matches.
    pub(crate) fn needs_body(&self, method: &str, rel: &CanonicalPath) -> Option<bool> {
        let (route, _) = self.match_http(method, rel)?;
        Some(
            route
                .inputs
                .iter()
                .any(|(_, s)| matches!(s, Source::Body(_))),
        )
    }

    /// The mapping of an MCP tool, if it is mapped.
    pub(crate) fn tool(&self, name: &str) -> Option<&ToolRoute> {
        self.tools.get(name)
    }

    fn match_http<'a>(
        &'a self,
        method: &str,
        rel: &'a CanonicalPath,
    ) -> Option<(&'a HttpRoute, BTreeMap<&'a str, &'a str>)> {
        self.routes.iter().find_map(|route| {
            if route.method != method || route.template.len() != rel.segments().len() {
                return None;
            }
            let mut captures = BTreeMap::new();
            for (seg, actual) in route.template.iter().zip(rel.segments()) {
                match seg {
                    Segment::Literal(l) if l == actual => {}
                    Segment::Literal(_) => return None,
                    Segment::Capture(name) => {
                        captures.insert(name.as_str(), actual.as_str());
                    }
                }
            }
            Some((route, captures))
        })
    }
}

impl HttpRoute {
    fn map(
        &self,
        captures: &BTreeMap<&str, &str>,
        query: &Query,
        body: Option<&Value>,
    ) -> Result<Mapped, MapError> {
        let resource = self.resource.render(|var| {
            let name = var.first().map(String::as_str).unwrap_or_default();
            captures
                .get(name)
                .map(|v| (*v).to_owned())
                .ok_or_else(|| MapError::BadValue(name.to_owned()))
        })?;
        let mut inputs = Map::new();
        for (name, source) in &self.inputs {
            let value = match source {
                Source::Query(param) => query
                    .single(param)
                    .map_err(|_| MapError::Query(param.clone()))?
                    .map(query_value),
                Source::Body(members) => body
                    .and_then(|b| lookup(b, members))
                    .filter(|v| !v.is_null())
                    .cloned(),
                Source::Arguments(_) => None,
            };
            // A declared input is required: a request that leaves it out could otherwise
            // escape the constraint it feeds (an absent `amount` is not limited).
            let v = value.ok_or_else(|| MapError::MissingInput(name.clone()))?;
            inputs.insert(name.clone(), v);
        }
        Ok(Mapped {
            action: self.action.clone(),
            resource,
            inputs,
        })
    }
}

impl ToolRoute {
    /// The operation of a `tools/call` with these `arguments`.
    pub(crate) fn map(&self, arguments: Option<&Value>) -> Result<Mapped, MapError> {
        let resource = self.resource.render(|var| {
            let value = arguments.and_then(|a| lookup(a, var));
            let shown = format!("arguments.{}", var.join("."));
            match value {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
                _ => Err(MapError::BadValue(shown)),
            }
        })?;
        let mut inputs = Map::new();
        for (name, source) in &self.inputs {
            if let Source::Arguments(members) = source {
                let v = arguments
                    .and_then(|a| lookup(a, members))
                    .filter(|v| !v.is_null())
                    .ok_or_else(|| MapError::MissingInput(name.clone()))?;
                inputs.insert(name.clone(), v.clone());
            }
        }
        Ok(Mapped {
            action: self.action.clone(),
            resource,
            inputs,
        })
    }

    /// Whether a caller with `scope` and `prohibitions` may see this tool in `tools/list`:
    /// some detail grants the action at `location` on *every* resource the tool can name
    /// (each segment with a placeholder taken as `*`, so `orders/*` or `orders/**` must be
    /// granted), and no prohibition forbids the action on all of them. Constraints are not
    /// evaluated: they depend on the call's inputs, and evaluating them must not spend a rate.
    pub(crate) fn listable(
        &self,
        scope: &Scope,
        prohibitions: &Prohibitions,
        location: Option<&Location>,
    ) -> bool {
        let Ok(action) = Action::new(&self.action) else {
            return false;
        };
        let Some(pattern) = self.resource.listing_pattern() else {
            return false;
        };
        let granted = scope.details().iter().any(|d| {
            let location_ok = match (d.locations(), location) {
                (None, _) => true,
                (Some(allowed), Some(l)) => allowed.contains(l),
                (Some(_), None) => false,
            };
            location_ok
                && d.actions().contains(&action)
                && d.resources().iter().any(|r| r.contains(&pattern))
        });
        let prohibited = prohibitions.iter().any(|p| {
            p.actions().contains(&action) && p.resources().iter().any(|r| r.contains(&pattern))
        });
        granted && !prohibited
    }
}

impl Template {
    fn parse(
        text: &str,
        var: impl Fn(&str) -> Result<Vec<String>, String>,
    ) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let (before, after) = rest.split_at(open);
            if !before.is_empty() {
                parts.push(Part::Text(before.to_owned()));
            }
            let close = after
                .find('}')
                .ok_or_else(|| format!("unclosed `{{` in `{text}`"))?;
            let inner = after.get(1..close).unwrap_or_default();
            parts.push(Part::Var(var(inner)?));
            rest = after.get(close + 1..).unwrap_or_default();
        }
        if rest.contains('}') {
            return Err(format!("unopened `}}` in `{text}`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The pattern of every resource the template can produce: each segment holding a
    /// placeholder becomes `*`.
    fn listing_pattern(&self) -> Option<ResourcePattern> {
        const MARK: char = '\u{0}';
        let text: String = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.clone(),
                Part::Var(_) => MARK.to_string(),
            })
            .collect();
        let pattern: Vec<&str> = text
            .split('/')
            .map(|seg| if seg.contains(MARK) { "*" } else { seg })
            .collect();
        ResourcePattern::parse(&pattern.join("/")).ok()
    }

    /// Renders the template, each value percent-encoded so that it stays one segment, and
    /// checks the result is a valid resource path.
    fn render(
        &self,
        value: impl Fn(&[String]) -> Result<String, MapError>,
    ) -> Result<String, MapError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => {
                    let raw = value(v)?;
                    if raw.is_empty() {
                        return Err(MapError::BadResource);
                    }
                    out.push_str(&path::encode(&raw));
                }
            }
        }
        ResourcePath::parse(&out).map_err(|_| MapError::BadResource)?;
        Ok(out)
    }
}

fn compile_upstream(u: &UpstreamConfig) -> Result<Upstream, GateError> {
    let url = reqwest::Url::parse(&u.url)
        .map_err(|e| config_error(format!("upstream `{}`: invalid url: {e}", u.name)))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.cannot_be_a_base()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        return Err(config_error(format!(
            "upstream `{}`: url must be an http(s) URL without credentials, query or fragment",
            u.name
        )));
    }
    let mount_text = match (&u.mount, u.kind) {
        (Some(m), _) => m.clone(),
        (None, UpstreamKind::Http) => "/".to_owned(),
        (None, UpstreamKind::Mcp) => url.path().to_owned(),
    };
    let mount = CanonicalPath::parse(&mount_text)
        .map_err(|e| config_error(format!("upstream `{}`: mount `{mount_text}`: {e}", u.name)))?;
    if mount.encoded() != mount_text {
        return Err(config_error(format!(
            "upstream `{}`: mount `{mount_text}` is not in canonical form (`{}`)",
            u.name,
            mount.encoded()
        )));
    }
    let base = match u.kind {
        UpstreamKind::Http => u.url.trim_end_matches('/').to_owned(),
        UpstreamKind::Mcp => url.to_string(),
    };
    Ok(Upstream {
        name: u.name.clone(),
        kind: u.kind,
        url: base,
        mount,
        routes: Vec::new(),
        tools: BTreeMap::new(),
    })
}

fn compile_route(r: &RouteConfig) -> Result<HttpRoute, GateError> {
    let what = format!("route `{} {}`", r.method, r.path);
    if r.method.is_empty() || !r.method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(config_error(format!(
            "{what}: the method must be uppercase letters"
        )));
    }
    let rest = r
        .path
        .strip_prefix('/')
        .ok_or_else(|| config_error(format!("{what}: the path must start with `/`")))?;
    let mut template = Vec::new();
    let mut names = HashSet::new();
    if !rest.is_empty() {
        for seg in rest.split('/') {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if !is_name(name) || !names.insert(name.to_owned()) {
                    return Err(config_error(format!(
                        "{what}: capture `{{{name}}}` must be a unique name of [a-z0-9_]"
                    )));
                }
                template.push(Segment::Capture(name.to_owned()));
            } else {
                let canonical = CanonicalPath::parse(&format!("/{seg}"))
                    .map_err(|e| config_error(format!("{what}: segment `{seg}`: {e}")))?;
                let literal = canonical.segments().first().cloned().unwrap_or_default();
                if literal.contains(['{', '}']) {
                    return Err(config_error(format!(
                        "{what}: a capture must be a whole segment"
                    )));
                }
                template.push(Segment::Literal(literal));
            }
        }
    }
    let resource = Template::parse(&r.resource, |inner| {
        if names.contains(inner) {
            Ok(vec![inner.to_owned()])
        } else {
            Err(format!("`{{{inner}}}` is not a capture of the path"))
        }
    })
    .map_err(|e| config_error(format!("{what}: resource: {e}")))?;
    check_renders(&resource, &what)?;
    let mut inputs = Vec::new();
    for (name, source) in &r.inputs {
        let parsed = if let Some(param) = source.strip_prefix("query.") {
            (!param.is_empty()).then(|| Source::Query(param.to_owned()))
        } else {
            source
                .strip_prefix("body.")
                .and_then(members)
                .map(Source::Body)
        };
        let parsed = parsed.ok_or_else(|| {
            config_error(format!(
                "{what}: input `{name}`: expected `query.<param>` or `body.<member>`"
            ))
        })?;
        inputs.push((name.clone(), parsed));
    }
    check_action(&r.action, &what)?;
    Ok(HttpRoute {
        method: r.method.clone(),
        template,
        action: r.action.clone(),
        resource,
        inputs,
    })
}

fn compile_tool(t: &ToolConfig) -> Result<ToolRoute, GateError> {
    let what = format!("tool `{}`", t.name);
    if t.name.is_empty() {
        return Err(config_error("a tool needs a `name`".into()));
    }
    let resource = Template::parse(&t.resource, |inner| {
        inner
            .strip_prefix("arguments.")
            .and_then(members)
            .ok_or_else(|| format!("`{{{inner}}}` must be `{{arguments.<member>}}`"))
    })
    .map_err(|e| config_error(format!("{what}: resource: {e}")))?;
    check_renders(&resource, &what)?;
    let mut inputs = Vec::new();
    for (name, source) in &t.inputs {
        let parsed = source
            .strip_prefix("arguments.")
            .and_then(members)
            .map(Source::Arguments)
            .ok_or_else(|| {
                config_error(format!(
                    "{what}: input `{name}`: expected `arguments.<member>`"
                ))
            })?;
        inputs.push((name.clone(), parsed));
    }
    check_action(&t.action, &what)?;
    Ok(ToolRoute {
        action: t.action.clone(),
        resource,
        inputs,
    })
}

/// A template whose placeholders are filled with a plain value must give a valid resource.
fn check_renders(t: &Template, what: &str) -> Result<(), GateError> {
    t.render(|_| Ok("x".to_owned())).map(drop).map_err(|_| {
        config_error(format!(
            "{what}: the resource template is not a valid resource path"
        ))
    })
}

fn check_action(action: &str, what: &str) -> Result<(), GateError> {
    mandate_core::scope::Action::new(action)
        .map(drop)
        .map_err(|e| config_error(format!("{what}: action: {e}")))
}

/// Two routes overlap when some path matches both.
fn overlaps(a: &HttpRoute, b: &HttpRoute) -> bool {
    a.method == b.method
        && a.template.len() == b.template.len()
        && a.template.iter().zip(&b.template).all(|pair| match pair {
            (Segment::Literal(x), Segment::Literal(y)) => x == y,
            _ => true,
        })
}

fn template_text(t: &[Segment]) -> String {
    if t.is_empty() {
        return "/".into();
    }
    t.iter()
        .map(|s| match s {
            Segment::Literal(l) => format!("/{l}"),
            Segment::Capture(c) => format!("/{{{c}}}"),
        })
        .collect()
}

/// `a.b.c` → `["a", "b", "c"]`, each a non-empty name.
fn members(path: &str) -> Option<Vec<String>> {
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    parts
        .iter()
        .all(|p| !p.is_empty() && p.len() <= 128)
        .then_some(parts)
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn lookup<'a>(value: &'a Value, members: &[String]) -> Option<&'a Value> {
    members.iter().try_fold(value, |v, m| v.get(m))
}

/// A query value as an input: a JSON number when it reads as one, else the string.
fn query_value(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Number(_)) => v,
        _ => Value::String(text.to_owned()),
    }
}

fn config_error(message: String) -> GateError {
    GateError::Config(message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use serde_json::json;

    fn table(extra: &str) -> RouteTable {
        let text = format!(
            r#"
listen = "127.0.0.1:0"
issuer = "http://127.0.0.1:1"
audience = "https://crm.example.com"
gate_id = "gat_x"
key_file = "k.json"
spool_dir = "spool"
[[upstream]]
name = "crm"
kind = "http"
url = "http://127.0.0.1:2/api/"
[[upstream]]
name = "tools"
kind = "mcp"
url = "http://127.0.0.1:3/mcp"
{extra}
"#
        );
        let config = GateConfig::from_toml(&text, std::path::Path::new("/")).unwrap();
        RouteTable::compile(&config).unwrap()
    }

    fn compile_err(extra: &str) -> String {
        let text = format!(
            r#"
listen = "127.0.0.1:0"
issuer = "http://127.0.0.1:1"
audience = "https://crm.example.com"
gate_id = "gat_x"
key_file = "k.json"
spool_dir = "spool"
[[upstream]]
name = "crm"
kind = "http"
url = "http://127.0.0.1:2"
{extra}
"#
        );
        match GateConfig::from_toml(&text, std::path::Path::new("/")) {
            Ok(config) => RouteTable::compile(&config).unwrap_err().to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn maps_http_routes() {
        let t = table(
            r#"
[[route]]
method = "DELETE"
path = "/tickets/{id}"
action = "delete"
resource = "tickets/{id}"
[[route]]
method = "POST"
path = "/refunds/{order}"
action = "write"
resource = "orders/{order}/refunds"
inputs = { amount = "body.payment.amount", currency = "query.currency" }
"#,
        );
        let path = CanonicalPath::parse("/tickets/a%20b").unwrap();
        let (u, rel) = t.upstream_for(&path).unwrap();
        assert_eq!(u.name, "crm");
        assert_eq!(u.url, "http://127.0.0.1:2/api");
        let m = u
            .map_http("DELETE", &rel, &Query::default(), None)
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.action.as_str(), m.resource.as_str()),
            ("delete", "tickets/a%20b")
        );
        assert!(
            u.map_http("delete", &rel, &Query::default(), None)
                .is_none()
        );
        assert!(u.map_http("GET", &rel, &Query::default(), None).is_none());
        assert_eq!(u.needs_body("DELETE", &rel), Some(false));

        let rel = CanonicalPath::parse("/refunds/7").unwrap();
        assert_eq!(u.needs_body("POST", &rel), Some(true));
        let q = Query::parse(Some("currency=USD")).unwrap();
        let body = json!({"payment": {"amount": 250}});
        let m = u.map_http("POST", &rel, &q, Some(&body)).unwrap().unwrap();
        assert_eq!(m.resource, "orders/7/refunds");
        assert_eq!(
            m.inputs,
            json!({"amount": 250, "currency": "USD"})
                .as_object()
                .unwrap()
                .clone()
        );
        let q = Query::parse(Some("currency=USD&currency=EUR")).unwrap();
        assert!(u.map_http("POST", &rel, &q, Some(&body)).unwrap().is_err());
    }

    #[test]
    fn maps_mcp_tools() {
        let t = table(
            r#"
[[tool]]
name = "refund_order"
action = "execute"
resource = "orders/{arguments.order_id}"
inputs = { amount = "arguments.amount" }
"#,
        );
        let (u, rel) = t
            .upstream_for(&CanonicalPath::parse("/mcp").unwrap())
            .unwrap();
        assert_eq!((u.name.as_str(), rel.segments().len()), ("tools", 0));
        assert!(
            t.upstream_for(&CanonicalPath::parse("/mcp/x").unwrap())
                .is_some_and(|(u, _)| u.name == "crm")
        );
        let tool = u.tool("refund_order").unwrap();
        let m = tool
            .map(Some(&json!({"order_id": "A-1", "amount": 12.5})))
            .unwrap();
        assert_eq!(m.resource, "orders/A-1");
        assert_eq!(m.inputs["amount"], json!(12.5));
        let m = tool
            .map(Some(&json!({"order_id": 42, "amount": 1})))
            .unwrap();
        assert_eq!(m.resource, "orders/42");
        assert_eq!(
            tool.map(Some(&json!({"order_id": 42}))),
            Err(MapError::MissingInput("amount".into()))
        );
        // A value cannot add segments or wildcards.
        for bad in [
            json!("1/../2"),
            json!(".."),
            json!("*"),
            json!(""),
            json!(1.5),
            json!(null),
            json!(["a"]),
        ] {
            assert!(
                matches!(
                    tool.map(Some(&json!({"order_id": bad, "amount": 1}))),
                    Err(MapError::BadValue(_) | MapError::BadResource)
                ),
                "{bad}"
            );
        }
        assert!(tool.map(None).is_err());
        let pattern = tool.resource.listing_pattern().unwrap();
        assert_eq!(pattern, ResourcePattern::parse("orders/*").unwrap());
        assert!(u.tool("close_account").is_none());
    }

    #[test]
    fn refuses_bad_configuration() {
        for (extra, expect) in [
            (
                "[[route]]\nmethod = \"get\"\npath = \"/a\"\naction = \"read\"\nresource = \"a\"",
                "uppercase",
            ),
            (
                "[[route]]\nmethod = \"GET\"\npath = \"/a/{id}\"\naction = \"read\"\nresource = \"a/{other}\"",
                "not a capture",
            ),
            (
                "[[route]]\nmethod = \"GET\"\npath = \"/a/{id}\"\naction = \"read\"\nresource = \"a/{id}\"\n[[route]]\nmethod = \"GET\"\npath = \"/a/b\"\naction = \"read\"\nresource = \"a/b\"",
                "same request",
            ),
            (
                "[[route]]\nmethod = \"GET\"\npath = \"/a/../b\"\naction = \"read\"\nresource = \"a\"",
                "dot segment",
            ),
            (
                "[[route]]\nmethod = \"GET\"\npath = \"/a\"\naction = \"read\"\nresource = \"../a\"",
                "not a valid resource",
            ),
            (
                "[[route]]\nmethod = \"GET\"\npath = \"/a\"\naction = \"read\"\nresource = \"a\"\ninputs = { amount = \"header.x\" }",
                "expected",
            ),
            (
                "[[tool]]\nname = \"x\"\naction = \"read\"\nresource = \"a\"",
                "not exactly one `mcp`",
            ),
            ("surprise = 1", "unknown field"),
        ] {
            let err = compile_err(extra);
            assert!(err.contains(expect), "{extra}: {err}");
        }
    }
}
