//! What the CLI prints for a person: `check`'s routing table, `status`'s
//! table and `routing-log`'s lines.

use edge_router::RouterConfig;
use edge_router::config::{DEFAULT_LARGE_SHARE, Node, SizeStrategy};
use edge_router::geo::NodeResidency;
use edge_router::pii::Mode;

/// A routing-log record for a person: when, who, where it went, how it went.
pub(crate) fn routing_line(r: &serde_json::Value) -> String {
    if let Some(missed) = r["missed"].as_u64() {
        return format!("... {missed} records went by while this reader was behind");
    }
    let text = |k: &str| r[k].as_str().unwrap_or("-").to_string();
    let time = text("time");
    let clock = time.get(11..23).unwrap_or(&time);
    let model = match (r["requested_model"].as_str(), r["served_model"].as_str()) {
        (Some(a), Some(b)) if a != b => format!("{a}->{b}"),
        (_, Some(m)) | (Some(m), None) => m.to_string(),
        (None, None) => "-".into(),
    };
    let tokens = match (r["tokens_in"].as_u64(), r["tokens_out"].as_u64()) {
        (Some(i), Some(o)) => format!(" tokens {i}/{o}"),
        _ => String::new(),
    };
    let refusal = r["refusal"].as_str().map(|w| format!(" refused: {w}")).unwrap_or_default();
    format!(
        "{clock} {} {:<2} {} {:<14} -> {:<14} attempts {} {} {} {} {}ms/{}ms{tokens}{refusal}",
        text("request_id"),
        text("country"),
        text("tenant"),
        text("rule"),
        text("node"),
        r["attempts"],
        model,
        r["status"],
        text("cache"),
        r["ttfb_ms"],
        r["duration_ms"],
    )
}

/// The status report as a table, like the seed's `deploy status`.
pub(crate) fn status_table(report: &serde_json::Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let num = |v: &serde_json::Value| v.as_f64();
    let ms = |v: &serde_json::Value| num(v).map_or_else(|| "-".to_string(), |m| format!("{m:.1}"));
    if let Some(version) = report["version"].as_str() {
        let _ = writeln!(out, "config {} version {version}", report["name"].as_str().unwrap_or_default());
    }
    let c = &report["config"];
    if let Some(sha) = c["sha256"].as_str() {
        let _ = writeln!(
            out,
            "live config: {} sha256 {} loaded {} (generation {})",
            c["file"].as_str().unwrap_or("?"),
            sha.get(..12).unwrap_or(sha),
            c["loaded_at"].as_str().unwrap_or("?"),
            c["generation"]
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<16} {:<22} {:<10} {:<16} {:>9} {:>6} {:>7} {:>8} {:>8} {:>17} {:>6}",
        "node",
        "where",
        "health",
        "breaker",
        "active",
        "weight",
        "err 1h",
        "p50 ms",
        "p95 ms",
        "cost today/budget",
        "share"
    );
    for n in report["nodes"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let health = if n["draining"].as_bool() == Some(true) {
            "draining"
        } else if n["rate_limited_for_ms"].as_u64().is_some_and(|m| m > 0) {
            "limited"
        } else {
            n["health"].as_str().unwrap_or("?")
        };
        let b = &n["breaker"];
        let breaker = match b["state"].as_str() {
            Some("closed") => format!("closed ({} fail)", b["failures"].as_u64().unwrap_or(0)),
            Some("open") => format!("open ({:.0}s)", num(&b["probe_in_ms"]).unwrap_or(0.0) / 1000.0),
            other => other.unwrap_or("?").to_string(),
        };
        let max = n["max_concurrent"].as_u64().map_or_else(|| "-".to_string(), |m| m.to_string());
        let active = format!("{}/{max}", n["in_flight"]);
        let h = &n["last_hour"];
        let today = &n["today"];
        let budget = num(&today["max_cost_per_day"]).map_or_else(|| "-".to_string(), |b| format!("{b:.2}"));
        let cost = format!("{:.4}/{budget}", num(&today["cost"]).unwrap_or(0.0));
        let place: Vec<&str> = ["provider", "region", "location"].iter().filter_map(|k| n[*k].as_str()).collect();
        let place = if place.is_empty() { "-".to_string() } else { place.join(" ") };
        let _ = writeln!(
            out,
            "{:<16} {:<22} {:<10} {:<16} {:>9} {:>6} {:>6.1}% {:>8} {:>8} {:>17} {:>5.1}%",
            n["id"].as_str().unwrap_or("?"),
            place,
            health,
            breaker,
            active,
            num(&n["weight"]).unwrap_or(0.0),
            num(&h["error_rate"]).unwrap_or(0.0) * 100.0,
            ms(&h["p50_ms"]),
            ms(&h["p95_ms"]),
            cost,
            num(&h["share_of_traffic"]).unwrap_or(0.0) * 100.0,
        );
    }
    let _ = writeln!(out, "\nrouting, last hour: {}", routing_split(report));
    for (title, key) in [("tenants today", "tenants_today"), ("rules today", "rules_today")] {
        let Some(map) = report[key].as_object().filter(|m| !m.is_empty()) else { continue };
        let _ = writeln!(out, "\n{title}:");
        for (name, t) in map {
            let _ = writeln!(
                out,
                "  {name:<24} {:>8} requests {:>10} tokens  cost {:.4}",
                t["requests"].as_u64().unwrap_or(0),
                t["tokens"].as_u64().unwrap_or(0),
                num(&t["cost"]).unwrap_or(0.0)
            );
        }
    }
    let _ = writeln!(
        out,
        "\nshare, errors and latency (to the response head) cover the last hour; the budget day resets in {}s",
        report["budget_day_resets_in_s"]
    );
    out
}

/// The last hour's requests by node type, as the source documents show
/// it: `local 45.2% / cloud 38.7% / edge 16.1%`.
pub(crate) fn routing_split(report: &serde_json::Value) -> String {
    let mut by_type: Vec<(String, u64)> = Vec::new();
    for n in report["nodes"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let kind = n["type"].as_str().unwrap_or("?").to_string();
        let served = n["last_hour"]["served"].as_u64().unwrap_or(0);
        match by_type.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, total)) => *total += served,
            None => by_type.push((kind, served)),
        }
    }
    let all: u64 = by_type.iter().map(|(_, n)| n).sum();
    if all == 0 {
        return "no requests served".into();
    }
    by_type.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    by_type.iter().map(|(k, n)| format!("{k} {:.1}%", *n as f64 * 100.0 / all as f64)).collect::<Vec<_>>().join(" / ")
}

/// Provider, region and location of a node, as written; `-` if none is.
pub(crate) fn whereabouts(n: &Node) -> String {
    let parts: Vec<&str> = [&n.provider, &n.region, &n.location].into_iter().filter_map(|p| p.as_deref()).collect();
    if parts.is_empty() { "-".into() } else { parts.join(" ") }
}

pub(crate) fn residency(config: &RouterConfig, n: &Node) -> String {
    match n.residency {
        NodeResidency::Global => "global".into(),
        NodeResidency::In(j) => config.residency.name(j).into(),
        NodeResidency::Unspecified => "-".into(),
    }
}

pub(crate) fn routing_table(config: &RouterConfig) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let name = if config.name.is_empty() { "(unnamed)" } else { &config.name };
    let version = config.version.as_ref().map(|v| format!(" version {v}")).unwrap_or_default();
    let _ = writeln!(out, "config {name}{version}: OK, {} nodes, {} rules", config.nodes.len(), config.rules.len());
    let _ = writeln!(out, "\nnodes:");
    let _ = writeln!(
        out,
        "  {:<18} {:<6} {:<9} {:<24} {:<9} {:>8} {:>8} {:>7}  {:<30} models",
        "id", "type", "api", "where", "residency", "priority", "cost/1k", "max", "host"
    );
    for n in &config.nodes {
        let max = n.max_concurrent.map_or_else(|| "-".to_string(), |m| m.to_string());
        let _ = writeln!(
            out,
            "  {:<18} {:<6} {:<9} {:<24} {:<9} {:>8} {:>8} {:>7}  {:<30} {}",
            n.id,
            n.node_type.as_str(),
            n.api.as_str(),
            whereabouts(n),
            residency(config, n),
            n.priority,
            n.cost_per_1k_tokens,
            max,
            n.base_url,
            n.models.join(", ")
        );
    }
    let _ = writeln!(out, "\nrules (in evaluation order, first match wins):");
    let ids = |list: &[usize]| list.iter().map(|&i| config.nodes[i].id.as_str()).collect::<Vec<_>>().join(", ");
    for r in &config.rules {
        let _ = writeln!(out, "  {:<20} {}", r.label, r.matcher);
        let _ = write!(out, "  {:<20} -> [{}] by {}", "", ids(&r.candidates), r.strategy.as_str());
        if !r.fallback.is_empty() {
            let _ = write!(out, ", then [{}]", ids(&r.fallback));
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "  {:<20} -> every node serving the model, by {}",
        "(no match)",
        config.default_strategy_name.as_str()
    );
    if let Some(p) = config.passthrough {
        let _ = writeln!(out, "  {:<20} -> {}", "(other paths)", config.nodes[p].id);
    }
    let m = &config.model_routing;
    let complex = m.complex_types.join(", ");
    let _ = match m.strategy {
        SizeStrategy::Tokens => writeln!(
            out,
            "\nmodel: auto -> each node's smallest model up to {} estimated tokens, its largest above them and for [{complex}]",
            m.small_max_tokens
        ),
        SizeStrategy::Learned => writeln!(
            out,
            "\nmodel: auto -> each node's largest model for the hardest {:.0}% by difficulty score and for [{complex}], its smallest for the rest",
            m.large_share.unwrap_or(DEFAULT_LARGE_SHARE) * 100.0
        ),
    };
    if config.pii.is_on() {
        let _ = writeln!(out, "\npersonal data ({}):", pii_kinds(&config.pii.detector));
        for mode in [Mode::Pseudonymize, Mode::Redact, Mode::Block] {
            let nodes: Vec<&str> = (0..config.nodes.len())
                .filter(|&i| config.pii.for_node(i) == Some(mode))
                .map(|i| config.nodes[i].id.as_str())
                .collect();
            if !nodes.is_empty() {
                let what = match mode {
                    Mode::Pseudonymize => "pseudonymized, restored in the answer",
                    Mode::Redact => "redacted",
                    Mode::Block => "the request refused",
                };
                let _ = writeln!(out, "  {:<20} -> {what}", nodes.join(", "));
            }
        }
    }
    out
}

/// The kinds a detector looks for, by name.
fn pii_kinds(detector: &edge_router::pii::Detector) -> String {
    let mut names: Vec<&str> = detector.kinds.iter().map(|k| k.name(&detector.patterns)).collect();
    names.extend(detector.patterns.iter().map(|p| p.name.as_str()));
    if detector.has_words() {
        names.push("word");
    }
    names.join(", ")
}
