//! Validation: checks that serde cannot express, then compilation into the
//! tables the router runs on (`compiled.rs`). A node's host is checked in
//! `hosts.rs`, `monitoring` and `autoscaling` in `operations.rs`.

mod access;
mod hosts;
mod operations;
mod pii;
mod server;

use std::collections::HashMap;

use origin_fallback::Strategy;

use super::Api;
use super::compiled::{Node, RouterConfig, Warning};
use super::load::{ConfigError, ConfigErrors, Position, Positions, covered};
use super::types::*;
use crate::geo::{Country, Geofence, NodeResidency, Residency, expand_country};
use crate::rules::{Matcher, Rule, TokenComparison, glob_match};

/// Minutes east of UTC in an offset such as `+05:30` or `-08:00` (also `Z`).
fn parse_utc_offset(text: &str) -> Option<i32> {
    if text == "Z" {
        return Some(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60 && h * 60 + m <= 14 * 60).then_some(sign * (h * 60 + m))
}

impl RouterConfig {
    /// Validates and compiles a deserialized config; `type_errors` are what
    /// deserializing it found, which a value's validation errors defer to.
    pub(super) fn validated(
        raw: ConfigFile,
        positions: &Positions,
        type_errors: Vec<ConfigError>,
    ) -> Result<Self, ConfigErrors> {
        let mut v = Validator { positions, errors: Vec::new(), warnings: Vec::new() };
        let mut compiled = v.compile(raw);
        // What validation says of a value that already has a type error
        // comes from the stand-in put there, not from the file.
        let found: Vec<ConfigError> = v
            .errors
            .iter()
            .filter(|(p, _)| !covered(&type_errors, p))
            .map(|(p, m)| positions.error(p, m.clone()))
            .collect();
        let mut errors = type_errors;
        errors.extend(found);
        if errors.is_empty() {
            compiled.warnings = v.warnings;
            for w in &mut compiled.warnings {
                w.position = positions.locate(&w.path);
            }
            Ok(compiled)
        } else {
            crate::order::sort_by_key(&mut errors, |e| (e.position.line, e.position.column));
            Err(ConfigErrors(errors))
        }
    }
}

struct Validator<'a> {
    positions: &'a Positions,
    errors: Vec<(String, String)>,
    warnings: Vec<Warning>,
}

fn strategy(name: StrategyName) -> Strategy {
    match name {
        StrategyName::CostAware => Strategy::CostAware,
        StrategyName::LatencyFirst => Strategy::LatencyFirst,
        StrategyName::Priority => Strategy::Priority,
        StrategyName::Weighted => Strategy::Weighted,
    }
}

impl Validator<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push((path.into(), message.into()));
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Warning { position: Position::default(), path: path.into(), message: message.into() });
    }

    fn compile(&mut self, raw: ConfigFile) -> RouterConfig {
        let listen = self.listen(&raw.server);
        let trusted_proxies = self.server(&raw.server);
        let mut residency = self.residency(&raw.residency);
        let nodes = self.nodes(&raw.nodes, &mut residency);
        let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        let default_strategy = self.default_strategy(&raw.routing);
        let rules = self.rules(&raw.routing, &nodes, default_strategy);
        let passthrough = raw.routing.passthrough.as_ref().and_then(|id| {
            let found = ids.iter().position(|n| n == id);
            if found.is_none() {
                self.err("routing.passthrough", format!("no node has the id `{id}`"));
            }
            found
        });
        let geofence = self.geofence(&raw.geofence);
        let auth = self.auth(&raw.auth);
        self.health(&raw.health_check);
        self.monitoring(&raw.monitoring, &raw.autoscaling, &nodes);
        self.state(&raw.state);
        self.model_routing(&raw.model_routing);
        let pii = self.pii(&raw.pii, &nodes, &residency);
        let b = raw.routing.retry_budget;
        if !(b.ratio.is_finite() && b.ratio >= 0.0) {
            self.err("routing.retry_budget.ratio", "must be zero or more (0.2 allows one retry per five requests)");
        }
        let budget_day = origin_fallback::BudgetDay {
            utc_offset_minutes: parse_utc_offset(&raw.budgets.utc_offset).unwrap_or_else(|| {
                let o = &raw.budgets.utc_offset;
                self.err("budgets.utc_offset", format!("`{o}` is not an offset such as `+00:00` or `-05:30`"));
                0
            }),
        };
        if raw.cache.enabled && raw.cache.memory.0 < 64 << 10 {
            self.err("cache.memory", format!("{} is too small for a cache: give it at least 64KiB", raw.cache.memory));
        }
        let admin_listen = raw.admin.listen.as_ref().and_then(|l| {
            let parsed = l.parse().ok();
            if parsed.is_none() {
                self.err("admin.listen", format!("`{l}` is not an address and port such as `127.0.0.1:9901`"));
            }
            parsed
        });
        RouterConfig {
            name: raw.name,
            version: raw.version.map(|v| v.to_string()),
            server: raw.server,
            trusted_proxies,
            listen,
            nodes,
            rules,
            default_strategy: strategy(default_strategy),
            default_strategy_name: default_strategy,
            passthrough,
            geofence,
            residency,
            model_routing: raw.model_routing,
            requests: raw.requests,
            auth,
            health_check: raw.health_check,
            retry_budget: raw.routing.retry_budget,
            budget_day,
            admin_listen,
            admin: raw.admin,
            cache: raw.cache,
            autoscaling: raw.autoscaling,
            state: raw.state,
            monitoring: raw.monitoring,
            pii,
            warnings: Vec::new(),
        }
    }

    fn residency(&mut self, r: &ResidencyConfig) -> Residency {
        let mut out = Residency::default();
        let mut seen_at: HashMap<Country, String> = HashMap::new();
        for (name, countries) in &r.jurisdictions {
            let path = format!("residency.jurisdictions.{name}");
            if name.eq_ignore_ascii_case("global") {
                self.err(&path, "`global` is reserved for nodes that may serve every jurisdiction");
                continue;
            }
            let id = out.names.len();
            out.names.push(name.clone());
            for (i, entry) in countries.iter().enumerate() {
                match expand_country(entry) {
                    Err(e) => self.err(format!("{path}[{i}]"), e),
                    Ok(list) => {
                        for c in list {
                            if let Some(other) = seen_at.get(&c).filter(|o| *o != name) {
                                self.err(
                                    format!("{path}[{i}]"),
                                    format!("{c} is already in jurisdiction `{other}`; a country belongs to one"),
                                );
                            }
                            seen_at.insert(c, name.clone());
                            out.by_country.insert(c, id);
                        }
                    }
                }
            }
        }
        if let Some(u) = &r.unknown {
            out.unknown = out.names.iter().position(|n| n == u);
            if out.unknown.is_none() {
                self.err("residency.unknown", format!("`{u}` is not one of the jurisdictions defined above"));
            }
        }
        out
    }

    /// `routing.default`, or `routing.strategy` as the source documents write it.
    fn default_strategy(&mut self, routing: &RoutingConfig) -> StrategyName {
        match (routing.default, routing.strategy) {
            (Some(d), Some(s)) if d != s => {
                self.err(
                    "routing.strategy",
                    format!(
                        "`strategy` is another name for `default`, and they differ (`{}` and `{}`): keep one",
                        d.as_str(),
                        s.as_str()
                    ),
                );
                d
            }
            (d, s) => d.or(s).unwrap_or_default(),
        }
    }

    fn nodes(&mut self, nodes: &[NodeConfig], residency: &mut Residency) -> Vec<Node> {
        if nodes.is_empty() {
            self.err("nodes", "at least one node is needed");
        }
        let mut first_seen: HashMap<&str, usize> = HashMap::new();
        let mut out = Vec::with_capacity(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            let path = format!("nodes[{i}]");
            let valid_id = !n.id.is_empty() && n.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !valid_id {
                self.err(
                    format!("{path}.id"),
                    format!("`{}` is not a usable id: use letters, digits, `-`, `_` or `.`", n.id),
                );
            }
            if let Some(first) = first_seen.insert(&n.id, i) {
                let first = format!("nodes[{first}]");
                let at = match self.positions.locate(&format!("{first}.id")).line {
                    0 => first,
                    line => format!("the node on line {line}"),
                };
                self.err(format!("{path}.id"), format!("the id `{}` is already used by {at}", n.id));
            }
            let base_url = self.base_url(&format!("{path}.host"), &n.host);
            for (m, model) in n.models.iter().enumerate() {
                if model.trim().is_empty() {
                    self.err(format!("{path}.models[{m}]"), "a model name cannot be empty");
                } else if n.models[..m].contains(model) {
                    self.err(format!("{path}.models[{m}]"), format!("`{model}` is listed twice"));
                }
            }
            if n.max_concurrent == Some(0) {
                self.err(format!("{path}.max_concurrent"), "must be at least 1 (leave it out for no limit)");
            }
            if !(n.cost_per_1k_tokens.is_finite() && n.cost_per_1k_tokens >= 0.0) {
                self.err(format!("{path}.cost_per_1k_tokens"), "must be zero or more");
            }
            if !(n.weight.is_finite() && n.weight >= 0.0) {
                self.err(format!("{path}.weight"), "must be zero or more");
            }
            if n.max_cost_per_day.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
                self.err(format!("{path}.max_cost_per_day"), "must be more than zero (leave it out for no budget)");
            }
            if let Some(env) = &n.api_key_env {
                let ok = env
                    .bytes()
                    .enumerate()
                    .all(|(k, b)| b == b'_' || b.is_ascii_uppercase() || (k > 0 && b.is_ascii_digit()));
                if env.is_empty() || !ok {
                    self.err(
                        format!("{path}.api_key_env"),
                        format!("`{env}` is not an environment variable name such as `OPENAI_API_KEY`"),
                    );
                }
            }
            if !n.health_path.starts_with('/') || n.health_path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                self.err(
                    format!("{path}.health_path"),
                    format!("`{}` is not a path such as `/v1/models` or `/health`", n.health_path),
                );
            }
            let t = &n.timeouts;
            if [t.connect, t.first_byte, t.idle, t.total].iter().any(|d| d.0.is_zero()) {
                self.err(format!("{path}.timeouts"), "time limits must be longer than zero");
            } else if t.total < t.first_byte {
                self.err(
                    format!("{path}.timeouts.total"),
                    format!("the total limit ({}) is shorter than first_byte ({})", t.total, t.first_byte),
                );
            }
            for (field, value) in [("provider", &n.provider), ("region", &n.region), ("location", &n.location)] {
                if value.as_deref().is_some_and(|v| v.trim().is_empty() || v.contains(char::is_whitespace)) {
                    self.err(format!("{path}.{field}"), "must be a word such as `aws` or `us-east-1`, without spaces");
                }
            }
            let node_residency = match n.data_residency.as_deref() {
                None => NodeResidency::Unspecified,
                Some(r) if r.eq_ignore_ascii_case("global") => NodeResidency::Global,
                Some(r) => match residency.names.iter().position(|name| name == r) {
                    Some(j) => NodeResidency::In(j),
                    None if expand_country(r).is_ok() => {
                        self.implicit_jurisdiction(&format!("{path}.data_residency"), r, residency)
                    }
                    None => {
                        let known = if residency.names.is_empty() {
                            "none are defined in `residency.jurisdictions`".to_string()
                        } else {
                            format!("known: {}", residency.names.join(", "))
                        };
                        self.err(
                            format!("{path}.data_residency"),
                            format!("`{r}` is neither `global`, a jurisdiction ({known}), a country nor a region"),
                        );
                        NodeResidency::Unspecified
                    }
                },
            };
            let api = n.api.or_else(|| n.provider.as_deref().and_then(Api::of_provider)).unwrap_or_default();
            if api == Api::Bedrock && n.region.is_none() {
                self.err(
                    format!("{path}.region"),
                    "a Bedrock node needs its AWS `region` (such as `us-east-1`): requests are signed for it",
                );
            }
            if api == Api::Bedrock && n.api_key_env.is_some() {
                self.err(
                    format!("{path}.api_key_env"),
                    "a Bedrock node signs with AWS credentials: name them in `aws_credentials_env`",
                );
            }
            if n.aws_credentials_env.is_some() && api != Api::Bedrock {
                self.err(
                    format!("{path}.aws_credentials_env"),
                    "only a node speaking `bedrock` signs with AWS credentials",
                );
            }
            if n.api_version.is_some() && api != Api::Azure {
                self.err(
                    format!("{path}.api_version"),
                    "only a node speaking `azure` (Azure OpenAI) takes an api-version",
                );
            }
            out.push(Node {
                id: n.id.clone(),
                node_type: n.node_type,
                provider: n.provider.clone(),
                api,
                api_version: n.api_version.clone(),
                aws_credentials_env: (api == Api::Bedrock).then(|| n.aws_credentials_env.clone().unwrap_or_default()),
                region: n.region.clone(),
                location: n.location.clone(),
                base_url,
                models: n.models.clone(),
                small_models: n.capabilities.iter().any(|c| c == "small_models"),
                max_concurrent: n.max_concurrent,
                priority: n.priority,
                residency: node_residency,
                cost_per_1k_tokens: n.cost_per_1k_tokens,
                max_cost_per_day: n.max_cost_per_day,
                cache_ttl: n.cache_ttl,
                weight: n.weight,
                api_key_env: n.api_key_env.clone(),
                timeouts: n.timeouts,
                health_path: n.health_path.clone(),
                metrics_url: n.metrics_url.as_deref().and_then(|u| self.http_url(&format!("{path}.metrics_url"), u)),
                capabilities: n.capabilities.clone(),
            });
        }
        out
    }

    /// A node's `data_residency` that names a country or region no
    /// jurisdiction is called after (`data_residency: EU`, with no
    /// `residency` section) makes that jurisdiction: its countries' requests
    /// stay on its nodes, as the name says.
    fn implicit_jurisdiction(&mut self, path: &str, name: &str, residency: &mut Residency) -> NodeResidency {
        let countries = expand_country(name).unwrap_or_default();
        let id = residency.names.len();
        let clash: Vec<String> = countries
            .iter()
            .filter_map(|c| residency.by_country.get(c).map(|&j| format!("{c} (in `{}`)", residency.name(j))))
            .collect();
        if !clash.is_empty() {
            self.err(
                path,
                format!(
                    "`{name}` would be a jurisdiction of its own, but {} already belong to another; name that one instead",
                    clash.join(", ")
                ),
            );
            return NodeResidency::Unspecified;
        }
        residency.names.push(name.to_string());
        for c in countries {
            residency.by_country.insert(c, id);
        }
        NodeResidency::In(id)
    }

    /// The nodes a target or fallback names: an id, a glob over ids, or a
    /// selector (`provider:aws`); `Err` says why none is named.
    pub(super) fn select(&mut self, path: &str, pattern: &str, nodes: &[Node]) -> Result<Vec<usize>, String> {
        let ids = || nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>().join(", ");
        let (field, glob) = match pattern.split_once(':') {
            Some((field, glob)) => (Some(field), glob),
            None => (None, pattern),
        };
        let attribute = |n: &Node| -> Option<String> {
            match field {
                None => Some(n.id.clone()),
                Some("type") => Some(n.node_type.as_str().to_string()),
                Some("provider") => n.provider.clone(),
                Some("region") => n.region.clone(),
                Some("location") => n.location.clone(),
                Some(_) => None,
            }
        };
        if let Some(f) = field.filter(|f| !["type", "provider", "region", "location"].contains(f)) {
            self.err(path, format!("`{f}:` is not a selector: use `type:`, `provider:`, `region:` or `location:`"));
            return Ok(Vec::new());
        }
        let found: Vec<usize> = nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| attribute(n).is_some_and(|v| glob_match(glob, &v)))
            .map(|(i, _)| i)
            .collect();
        if !found.is_empty() {
            return Ok(found);
        }
        Err(match field {
            Some(f) => format!("`{pattern}` selects no node: no node's {f} matches `{glob}`"),
            None if pattern.contains(['*', '?']) => format!("`{pattern}` matches no node id (nodes: {})", ids()),
            None => format!("`{pattern}` is not the id of any node (nodes: {})", ids()),
        })
    }

    fn rules(&mut self, routing: &RoutingConfig, nodes: &[Node], default: StrategyName) -> Vec<Rule> {
        let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
        let mut rules = Vec::new();
        for (i, r) in routing.rules.iter().enumerate() {
            let path = format!("routing.rules[{i}]");
            let candidates = self.select(&format!("{path}.target"), &r.target, nodes).unwrap_or_else(|why| {
                self.err(format!("{path}.target"), why);
                Vec::new()
            });
            let mut fallback = Vec::new();
            for (k, f) in r.fallback.iter().enumerate() {
                let path = format!("{path}.fallback[{k}]");
                // The documents name fallbacks defined in another file:
                // one that names nothing here is skipped, not fatal.
                let found = self.select(&path, f, nodes).unwrap_or_else(|why| {
                    self.warn(&path, format!("{why}; this fallback is skipped"));
                    Vec::new()
                });
                for n in found {
                    if !fallback.contains(&n) && !candidates.contains(&n) {
                        fallback.push(n);
                    }
                }
            }
            let matcher = self.matcher(&format!("{path}.match"), &r.matcher);
            let canary = r.canary.as_ref().and_then(|c| {
                let node = ids.iter().position(|id| *id == c.node);
                if node.is_none() {
                    self.err(format!("{path}.canary.node"), format!("`{}` is not the id of any node", c.node));
                }
                if !(0.0..=100.0).contains(&c.percent) {
                    self.err(format!("{path}.canary.percent"), format!("{} is not a share from 0 to 100", c.percent));
                }
                Some((node?, c.percent))
            });
            rules.push(Rule {
                label: r.name.clone().unwrap_or_else(|| format!("rules[{i}]")),
                matcher,
                candidates,
                fallback,
                strategy: strategy(r.strategy.unwrap_or(default)),
                priority_boost: r.priority_boost,
                canary,
                cache_ttl: r.cache_ttl,
            });
        }
        // Stable: equal boosts keep file order.
        crate::order::sort_by_key(&mut rules, |r| std::cmp::Reverse(r.priority_boost));
        if let Some(pos) = rules.iter().position(|r| r.matcher.is_catch_all())
            && pos + 1 < rules.len()
        {
            let shadowed: Vec<&str> = rules[pos + 1..].iter().map(|r| r.label.as_str()).collect();
            self.warn(
                "routing.rules",
                format!(
                    "rule `{}` matches every request, so {} can never match",
                    rules[pos].label,
                    shadowed.join(", ")
                ),
            );
        }
        rules
    }

    fn matcher(&mut self, path: &str, m: &MatchConfig) -> Matcher {
        let mut out = Matcher {
            request_type: m.request_type.clone(),
            min_tokens: m.min_tokens,
            max_tokens: m.max_tokens,
            user_tier: m.user_tier.as_ref().map(OneOrMany::to_vec),
            model: m.model.as_ref().map(OneOrMany::to_vec),
            ..Matcher::default()
        };
        if m.request_type.as_deref().is_some_and(|t| t.trim().is_empty()) {
            self.err(format!("{path}.type"), "a request type cannot be empty; use `*` for any");
        }
        if let (Some(lo), Some(hi)) = (m.min_tokens, m.max_tokens)
            && lo > hi
        {
            self.err(
                format!("{path}.min_tokens"),
                format!("min_tokens ({lo}) is larger than max_tokens ({hi}), so the rule can never match"),
            );
        }
        if let Some(e) = &m.estimated_tokens {
            match TokenComparison::parse(e) {
                Ok(c) => out.estimated_tokens = Some(c),
                Err(msg) => self.err(format!("{path}.estimated_tokens"), msg),
            }
        }
        if let Some(g) = &m.geo {
            let mut countries = Vec::new();
            for (i, entry) in g.to_vec().iter().enumerate() {
                let p = if matches!(g, OneOrMany::One(_)) { format!("{path}.geo") } else { format!("{path}.geo[{i}]") };
                match expand_country(entry) {
                    Ok(list) => countries.extend(list),
                    Err(e) => self.err(p, e),
                }
            }
            out.geo = Some(countries);
        }
        out
    }

    fn countries(&mut self, path: &str, list: &[String]) -> std::collections::BTreeSet<Country> {
        let mut out = std::collections::BTreeSet::new();
        for (i, entry) in list.iter().enumerate() {
            match expand_country(entry) {
                Ok(c) => out.extend(c),
                Err(e) => self.err(format!("{path}[{i}]"), e),
            }
        }
        out
    }

    fn geofence(&mut self, g: &GeofenceConfig) -> Geofence {
        Geofence {
            allow: self.countries("geofence.allow", &g.allow),
            deny: self.countries("geofence.deny", &g.deny),
            unknown: g.unknown,
        }
    }

    fn health(&mut self, h: &HealthCheckConfig) {
        if h.unhealthy_threshold == 0 {
            self.err("health_check.unhealthy_threshold", "must be at least 1");
        }
        if h.interval.0.is_zero() || h.timeout.0.is_zero() {
            self.err("health_check", "interval and timeout must be longer than zero");
        }
        if h.timeout > h.interval {
            self.err(
                "health_check.timeout",
                format!("the timeout ({}) is longer than the interval ({})", h.timeout, h.interval),
            );
        }
        if h.cool_down.0.is_zero() {
            self.err("health_check.cool_down", "must be longer than zero");
        }
        if h.max_cool_down < h.cool_down {
            self.err(
                "health_check.max_cool_down",
                format!("the longest cool-down ({}) is shorter than the first ({})", h.max_cool_down, h.cool_down),
            );
        }
    }

    fn model_routing(&mut self, m: &ModelRoutingConfig) {
        if m.complex_types.iter().any(|t| t.trim().is_empty()) {
            self.err("model_routing.complex_types", "request types cannot be empty");
        }
        match (m.strategy, m.large_share) {
            (SizeStrategy::Tokens, Some(_)) => self.err(
                "model_routing.large_share",
                "`large_share` applies to `strategy: learned`; with `strategy: tokens` (the default) `small_max_tokens` decides",
            ),
            (SizeStrategy::Learned, Some(share)) if !(0.0..=1.0).contains(&share) => {
                self.err("model_routing.large_share", format!("must be a share from 0 to 1 (0.3 is 30%), not {share}"))
            }
            _ => {}
        }
    }
}
