//! Configuration: the file format, loading with positions, and validation.
//!
//! `RouterConfig::load` is the way in (`entry.rs`, with the Workers build's
//! two): parse, deserialize, validate, compile. Any error refuses the whole
//! file, so a config is never half applied.

mod access;
mod compiled;
mod duration;
mod entry;
mod instant;
mod load;
mod metric;
mod net;
mod operations;
mod percent;
mod provider;
mod series;
mod server;
mod size;
mod state;
mod types;
mod validate;

pub use access::{ApiKeyConfig, AuthConfig, JwtConfig, RateLimitsConfig, TenantConfig};
pub use compiled::{Node, RouterConfig, Warning, cost_of};
pub use duration::DurationSpec;
pub use instant::parse_instant_ms;
pub use load::{ConfigError, ConfigErrors, Position};
pub use metric::Metric;
pub use net::CidrBlock;
pub use operations::{AccessLogTarget, AutoscalingConfig, MonitoringConfig, ScaleAction, ScalingConfig};
pub use percent::Percent;
pub use provider::{Api, AwsCredentialsEnv};
pub use series::Series;
pub use server::{HstsConfig, ServerConfig, TlsCertificate, TlsConfig};
pub use size::ByteSize;
pub use state::{StateConfig, StoreAddress};
pub use types::*;

/// The JSON Schema of the config file, for editors.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(ConfigFile);
    serde_json::to_value(schema).unwrap_or_default()
}

#[cfg(test)]
mod seed_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> String {
        let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_example_configs_load() {
        let hybrid = RouterConfig::load("hybrid.yaml", &example("hybrid.yaml")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hybrid.nodes.len(), 5);
        // The boosted vip rule is evaluated first.
        assert_eq!(hybrid.rules[0].label, "vip-cloud");
        assert!(hybrid.warnings.is_empty(), "{:?}", hybrid.warnings);
        let demo = example("demo.yaml").replace("{{", "http://127.0.0.1:1/").replace("}}", "");
        RouterConfig::load("demo.yaml", &demo).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn the_committed_json_schema_is_current() {
        let committed: serde_json::Value = serde_json::from_str(&example("../config.schema.json")).unwrap_or_default();
        assert_eq!(committed, json_schema(), "regenerate with `edge-router schema > config.schema.json`");
    }

    #[test]
    fn json_configs_are_accepted_and_located_too() {
        let ok = r#"{"nodes": [{"id": "a", "type": "cloud", "host": "http://a"}]}"#;
        assert!(RouterConfig::load("c.json", ok).is_ok());
        let bad = "{\n  \"nodes\": [\n    {\"id\": \"a\", \"type\": \"moon\", \"host\": \"http://a\"}\n  ]\n}";
        let err = RouterConfig::load("c.json", bad).unwrap_err().to_string();
        assert!(err.starts_with("c.json:3:") && err.contains("unknown variant `moon`"), "{err}");
    }

    #[test]
    fn json_read_without_positions_says_where_it_can() {
        // A type error: serde_json's line and column.
        let bad = "{\n  \"nodes\": [\n    {\"id\": \"a\", \"type\": \"moon\", \"host\": \"http://a\"}\n  ]\n}";
        let err = RouterConfig::load_json("kv", bad).unwrap_err().to_string();
        assert!(err.starts_with("kv:3:") && err.contains("unknown variant `moon`"), "{err}");
        assert!(!err.contains(" at line "), "the position is said once: {err}");
        // Not JSON at all (YAML, say).
        let err = RouterConfig::load_json("kv", "nodes:\n  - id: a\n").unwrap_err().to_string();
        assert!(err.starts_with("kv:1:") && err.contains(": this is not valid JSON: "), "{err}");
        // A key given twice, which serde_json alone would read as its last value.
        let twice = "{\"auth\": {\"tenants\": {\"acme\": {\"tier\": \"gold\"},\n \"acme\": {}}}}";
        let err = RouterConfig::load_json("kv", twice).unwrap_err().to_string();
        assert!(err.starts_with("kv:2:") && err.contains("`acme` appears twice in the same object"), "{err}");
        // What validation finds: named by its path, with no made-up line.
        let two = r#"{"nodes": [{"id": "a", "type": "cloud", "host": "http://a"}, {"id": "a", "type": "cloud", "host": "ftp://b"}]}"#;
        let err = RouterConfig::load_json("kv", two).unwrap_err();
        let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
        assert!(lines.iter().any(|l| l == "kv: nodes[1].id: the id `a` is already used by nodes[0]"), "{lines:#?}");
        assert!(
            lines.iter().any(|l| l.starts_with("kv: nodes[1].host: ") && l.contains("http or https")),
            "{lines:#?}"
        );
        // What the Workers build cannot honour is refused on the way to its JSON, located.
        let jwt = "nodes: [{id: a, type: cloud, host: \"http://a\"}]\nauth:\n  jwt: {jwks: {keys: [{kty: oct, kid: h1, k: c2VjcmV0}]}}\n";
        assert!(RouterConfig::load("c.yaml", jwt).is_ok(), "the edge box checks JWTs");
        let err = RouterConfig::load_to_json("c.yaml", jwt).unwrap_err().to_string();
        assert!(err.starts_with("c.yaml:3:") && err.contains("auth.jwt: JWT bearer tokens"), "{err}");
        // And by the Worker's reader of KV configs, named by its path.
        let jwt_json = r#"{"nodes": [{"id": "a", "type": "cloud", "host": "http://a"}],
            "auth": {"jwt": {"jwks": {"keys": [{"kty": "oct", "kid": "h1", "k": "c2VjcmV0"}]}}}}"#;
        let err = RouterConfig::load_json("kv", jwt_json).unwrap_err().to_string();
        assert!(err.starts_with("kv: auth.jwt: JWT bearer tokens are checked by the edge box only"), "{err}");
        // The same mistake in YAML names the line.
        let yaml =
            "nodes:\n  - {id: a, type: cloud, host: \"http://a\"}\n  - {id: a, type: cloud, host: \"http://b\"}\n";
        let err = RouterConfig::load("c.yaml", yaml).unwrap_err().to_string();
        assert!(err.contains("already used by the node on line 2"), "{err}");
    }

    #[test]
    fn every_error_is_reported_not_just_the_first() {
        let yaml = "nodes:\n  - {id: a, type: cloud, host: \"http://a\", weight: -1}\n  - {id: b, type: cloud, host: \"ftp://nope\"}\ngeofence:\n  deny: [Narnia]\n";
        let err = RouterConfig::load("c.yaml", yaml).unwrap_err();
        let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[0].starts_with("c.yaml:2:") && lines[0].contains("weight"), "{}", lines[0]);
        assert!(lines[1].starts_with("c.yaml:3:") && lines[1].contains("must be http or https"), "{}", lines[1]);
        assert!(lines[2].starts_with("c.yaml:5:") && lines[2].contains("two-letter"), "{}", lines[2]);
    }

    #[test]
    fn residency_mistakes_are_caught() {
        let yaml = "residency:\n  jurisdictions: {EU: [\"@EU\"], DE-ONLY: [DE]}\nnodes:\n  - {id: a, type: cloud, host: \"http://a\", data_residency: EUROPE}\n";
        let err = RouterConfig::load("c.yaml", yaml).unwrap_err().to_string();
        assert!(err.contains("already in jurisdiction"), "{err}");
        assert!(err.contains("`EUROPE` is neither `global`, a jurisdiction"), "{err}");
    }

    #[test]
    fn pii_policies_name_nodes_by_type_id_selector_or_residency_and_the_first_decides() {
        use crate::pii::{Kind, Mode};
        let nodes = "nodes:\n  - {id: gpu, type: local, host: \"http://g\"}\n  - {id: eu, type: cloud, host: \"http://e\", data_residency: EU}\n  - {id: us, type: cloud, host: \"http://u\", provider: openai}\n  - {id: tiny, type: edge, host: \"http://t\"}\n";
        let modes = |yaml: &str| {
            let cfg = RouterConfig::load("c.yaml", &format!("{nodes}{yaml}")).unwrap_or_else(|e| panic!("{e}"));
            (0..4).map(|i| cfg.pii.for_node(i)).collect::<Vec<_>>()
        };
        assert_eq!(modes(""), [None; 4], "off unless asked for");
        let (p, r, b) = (Some(Mode::Pseudonymize), Some(Mode::Redact), Some(Mode::Block));
        assert_eq!(modes("pii: {mode: pseudonymize}\n"), [None, p, p, p], "every node but local ones by default");
        assert_eq!(modes("pii: {apply_to: [cloud], mode: pseudonymize}\n"), [None, p, p, None]);
        let layered = "pii:\n  mode: redact\n  apply_to: [\"*\"]\n  policies:\n    - {apply_to: [\"residency:EU\"], mode: off}\n    - {apply_to: [\"provider:openai\", tiny], mode: block}\n";
        assert_eq!(modes(layered), [r, None, b, b], "the first policy naming a node decides");

        let cfg = RouterConfig::load(
            "c.yaml",
            &format!("{nodes}pii:\n  mode: block\n  detect: [email, iban]\n  patterns: [{{name: employee_id, regex: \"EMP-[0-9]{{6}}\"}}]\n  words: [Project Falcon]\n"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let found: Vec<Kind> = cfg
            .pii
            .detector
            .find("EMP-123456 on project falcon, 8.8.8.8, a@b.example")
            .iter()
            .map(|f| f.kind)
            .collect();
        assert_eq!(found, [Kind::Pattern(0), Kind::Word, Kind::Email], "only the kinds asked for");

        let bad = "pii:\n  apply_to: [cloud, nowhere, \"residency:APAC\"]\n  detect: [email, passport]\n  patterns:\n    - {name: email, regex: \"x\"}\n    - {name: ok, regex: \"(unclosed\"}\n    - {name: empty, regex: \"a*\"}\n  words: [\" \"]\n";
        let err = RouterConfig::load("c.yaml", &format!("{nodes}{bad}")).unwrap_err().to_string();
        for expected in [
            "pii.mode: `apply_to` needs a `mode`",
            "pii.detect[1]: `passport` is not a kind",
            "pii.patterns[0].name: `email` is a built-in kind's name",
            "pii.patterns[1].regex: is not a regular expression",
            "pii.patterns[2].regex: matches the empty text",
            "pii.words[0]: is empty",
        ] {
            assert!(err.contains(expected), "{expected:?} in {err}");
        }
        let err = RouterConfig::load(
            "c.yaml",
            &format!("{nodes}pii: {{mode: redact, apply_to: [nowhere, \"residency:APAC\"]}}\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("c.yaml:6:") && err.contains("`nowhere` is not the id of any node"), "{err}");
        assert!(err.contains("`residency:APAC` selects no node"), "{err}");

        let named_like_a_type = "nodes:\n  - {id: edge, type: cloud, host: \"http://e\"}\npii: {mode: redact, detect: [], policies: [{apply_to: [edge], mode: off}]}\n";
        let cfg = RouterConfig::load("c.yaml", named_like_a_type).unwrap_or_else(|e| panic!("{e}"));
        let warnings: Vec<&str> = cfg.warnings.iter().map(|w| w.message.as_str()).collect();
        assert!(warnings.iter().any(|w| w.contains("names the node type here, not the node")), "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("nothing is looked for")), "{warnings:?}");
        let shouting = format!("{nodes}pii: {{mode: redact, patterns: [{{name: EMAIL, regex: x}}]}}\n");
        let err = RouterConfig::load("c.yaml", &shouting).unwrap_err().to_string();
        assert!(err.contains("is a built-in kind's name"), "{err}");
    }

    #[test]
    fn a_catch_all_rule_shadowing_later_rules_is_a_warning() {
        let yaml = "nodes:\n  - {id: a, type: cloud, host: \"http://a\"}\nrouting:\n  rules:\n    - {match: {}, target: a}\n    - {name: never, match: {geo: DE}, target: a}\n";
        let cfg = RouterConfig::load("c.yaml", yaml).unwrap();
        assert!(cfg.warnings[0].message.contains("never can never match"), "{:?}", cfg.warnings);
    }

    #[test]
    fn health_check_cool_downs_are_checked() {
        let yaml = "nodes:\n  - {id: a, type: cloud, host: \"http://a\"}\nhealth_check:\n  cool_down: 1m\n  max_cool_down: 30s\n";
        let err = RouterConfig::load("c.yaml", yaml).unwrap_err().to_string();
        assert!(err.contains("health_check.max_cool_down") && err.contains("shorter than the first"), "{err}");
        let zero = yaml.replace("cool_down: 1m", "cool_down: 0s");
        let err = RouterConfig::load("c.yaml", &zero).unwrap_err().to_string();
        assert!(err.contains("health_check.cool_down: must be longer than zero"), "{err}");
    }

    #[test]
    fn cache_sizes_and_rule_ttls_are_checked() {
        let yaml = "nodes:\n  - {id: a, type: cloud, host: \"http://a\"}\nrouting:\n  rules:\n    - {match: {}, target: a, cache_ttl: soon}\ncache:\n  memory: 12 parsecs\n";
        let err = RouterConfig::load("c.yaml", yaml).unwrap_err().to_string();
        assert!(err.contains("c.yaml:5:") && err.contains("`soon` is not a duration"), "{err}");
        let small = yaml.replace("cache_ttl: soon", "cache_ttl: 1h").replace("12 parsecs", "1KiB");
        let err = RouterConfig::load("c.yaml", &small).unwrap_err().to_string();
        assert!(err.contains("cache.memory: 1KiB is too small"), "{err}");
        let ok = small.replace("1KiB", "256MiB");
        let cfg = RouterConfig::load("c.yaml", &ok).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((cfg.cache.memory.0, cfg.rules[0].cache_ttl.map(|t| t.as_millis())), (256 << 20, Some(3_600_000)));
    }

    #[test]
    fn node_health_paths_and_body_time_limits_are_checked() {
        let yaml = "nodes:\n  - {id: a, type: cloud, host: \"http://a\", health_path: health, timeouts: {first_byte: 2m, total: 1m}}\n  - {id: b, type: cloud, host: \"http://b\", timeouts: {idle: 0s}}\n";
        let err = RouterConfig::load("c.yaml", yaml).unwrap_err().to_string();
        assert!(err.contains("nodes[0].health_path") && err.contains("`health` is not a path"), "{err}");
        assert!(err.contains("nodes[0].timeouts.total") && err.contains("shorter than first_byte"), "{err}");
        assert!(err.contains("nodes[1].timeouts: time limits must be longer than zero"), "{err}");
    }
}
