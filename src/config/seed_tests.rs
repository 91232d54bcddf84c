//! The users' configs as the source documents write them, and what the
//! fields they use mean.

use super::*;
use crate::geo::{Country, NodeResidency};

/// `../shared/seed-configs/NAME`: read as written, never copied.
fn seed(name: &str) -> String {
    let path = format!("{}/../shared/seed-configs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (the suite needs ../shared beside the repository)"))
}

fn load(text: &str) -> Result<RouterConfig, ConfigErrors> {
    RouterConfig::load("c.yaml", text)
}

fn warned(cfg: &RouterConfig, path: &str, words: &str) -> bool {
    cfg.warnings.iter().any(|w| w.path == path && w.message.contains(words))
}

#[test]
fn the_four_seed_configs_load_as_written() {
    for name in ["hybrid-deploy.yaml", "local-plus-cloud.yaml", "multi-region.yaml", "edge-local-cloud.yaml"] {
        RouterConfig::load(name, &seed(name)).unwrap_or_else(|e| panic!("{name}:\n{e}"));
    }
}

/// What a config compiles to, as lines in an order that does not depend on
/// the order of hash maps, without the warnings (their positions differ).
fn compiled_lines(mut cfg: RouterConfig) -> Vec<String> {
    cfg.warnings.clear();
    let mut lines: Vec<String> = format!("{cfg:#?}").lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// The Workers build bundles each config as the JSON `load_to_json` writes
/// and reads it with `load_json`: every seed and example must come out the
/// same as from its YAML, warnings included (unlocated).
#[test]
fn the_seeds_and_examples_compile_the_same_from_their_json() {
    let example = |name: &str| {
        let path = format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let demo = example("demo.yaml").replace("{{", "http://127.0.0.1:1/").replace("}}", "");
    let texts = ["hybrid-deploy.yaml", "local-plus-cloud.yaml", "multi-region.yaml", "edge-local-cloud.yaml"]
        .map(|name| (name, seed(name)))
        .into_iter()
        .chain([("hybrid.yaml", example("hybrid.yaml")), ("demo.yaml", demo)]);
    for (name, text) in texts {
        let (from_yaml, json) = RouterConfig::load_to_json(name, &text).unwrap_or_else(|e| panic!("{name}:\n{e}"));
        let from_json = RouterConfig::load_json(name, &json).unwrap_or_else(|e| panic!("{name} as JSON:\n{e}"));
        let said =
            |cfg: &RouterConfig| cfg.warnings.iter().map(|w| (w.path.clone(), w.message.clone())).collect::<Vec<_>>();
        assert_eq!(said(&from_json), said(&from_yaml), "{name}");
        assert!(from_json.warnings.iter().all(|w| w.position.line == 0), "{name}: JSON keeps no positions");
        // In order where order routes: the nodes, and each rule's candidates.
        let order = |cfg: &RouterConfig| {
            let nodes: Vec<String> = cfg.nodes.iter().map(|n| n.id.clone()).collect();
            let rules: Vec<String> = cfg.rules.iter().map(|r| format!("{} {:?}", r.label, r.candidates)).collect();
            (nodes, rules)
        };
        assert_eq!(order(&from_json), order(&from_yaml), "{name}");
        assert_eq!(compiled_lines(from_json), compiled_lines(from_yaml), "{name}");
    }
}

#[test]
fn the_main_seed_means_what_the_documents_mean() {
    let cfg = RouterConfig::load("hybrid-deploy.yaml", &seed("hybrid-deploy.yaml")).unwrap();
    assert_eq!(cfg.version.as_deref(), Some("1.0"));
    let local = &cfg.nodes[cfg.node_index("local-primary").unwrap()];
    assert_eq!(local.base_url, "http://192.168.1.100:5000", "a private address without a scheme is http");
    let aws = &cfg.nodes[cfg.node_index("cloud-aws-us").unwrap()];
    assert_eq!((aws.provider.as_deref(), aws.region.as_deref()), (Some("aws"), Some("us-east-1")));
    let edge = &cfg.nodes[cfg.node_index("edge-cn-beijing").unwrap()];
    assert_eq!(edge.location.as_deref(), Some("cn-beijing"));
    // What is loaded but not acted on comes back as warnings, located.
    let fallback = "routing.rules[1].fallback[0]";
    assert!(warned(&cfg, fallback, "`cloud-aws-eu` is not the id of any node"), "{:?}", cfg.warnings);
    assert!(warned(&cfg, fallback, "this fallback is skipped"), "{:?}", cfg.warnings);
    let w = cfg.warnings.iter().find(|w| w.path == fallback).unwrap();
    assert_eq!(w.position.line, 43, "the line of `cloud-aws-eu` in the file");
    assert!(warned(&cfg, "monitoring.metrics[0]", "node's own machine"), "{:?}", cfg.warnings);
    assert!(warned(&cfg, "autoscaling[0].metric", "node's own machine"), "{:?}", cfg.warnings);
    assert!(!cfg.warnings.iter().any(|w| w.path == "monitoring.metrics[2]" || w.path == "monitoring.metrics[3]"));
    assert!(warned(&cfg, "nodes[0].host", "`http://192.168.1.100:5000` is used"), "{:?}", cfg.warnings);
    assert_eq!(cfg.autoscaling.len(), 2);
    // The vip rule (boost 5) is tried first; the complex rule keeps its target.
    assert_eq!(cfg.rules[0].label, "rules[3]");
    assert!(cfg.rules.iter().all(|r| !r.candidates.is_empty()));
}

#[test]
fn routing_strategy_is_the_default_strategy() {
    let cfg = RouterConfig::load("edge-local-cloud.yaml", &seed("edge-local-cloud.yaml")).unwrap();
    assert_eq!(cfg.default_strategy_name, StrategyName::LatencyFirst);
    let both = "nodes: [{id: a, type: cloud, host: \"http://a\"}]\nrouting: {default: priority, strategy: weighted}\n";
    let err = load(both).unwrap_err().to_string();
    assert!(err.contains("routing.strategy") && err.contains("keep one"), "{err}");
    let same = both.replace("weighted", "priority");
    assert_eq!(load(&same).unwrap().default_strategy_name, StrategyName::Priority);
}

#[test]
fn region_names_in_geo_and_residency_mean_their_countries() {
    let cfg = RouterConfig::load("multi-region.yaml", &seed("multi-region.yaml")).unwrap();
    let c = |s: &str| Country::parse(s);
    let eu_rule = cfg.rules.iter().find(|r| r.label == "rules[1]").unwrap();
    let geo = eu_rule.matcher.geo.as_ref().unwrap();
    assert_eq!(geo.len(), 27, "`geo: EU` is the member states");
    assert!(geo.contains(&c("FR").unwrap()) && !geo.contains(&c("GB").unwrap()));
    // `data_residency: EU` with no `residency` section keeps EU data on EU nodes.
    let j = cfg.residency.jurisdiction_of(c("DE")).expect("DE is bound");
    assert_eq!(cfg.residency.name(j), "EU");
    let eu_node = &cfg.nodes[cfg.node_index("cloud-eu").unwrap()];
    assert_eq!(eu_node.residency, NodeResidency::In(j));
    assert_eq!(cfg.residency.name(cfg.residency.jurisdiction_of(c("CN")).unwrap()), "CN");
    assert_eq!(cfg.residency.jurisdiction_of(c("JP")), None, "a country no node names is bound to nothing");
}

#[test]
fn an_implicit_jurisdiction_may_not_take_countries_from_another() {
    let yaml = "nodes:\n  - {id: a, type: cloud, host: \"http://a\", data_residency: EU}\n  - {id: b, type: cloud, host: \"http://b\", data_residency: DE}\n";
    let err = load(yaml).unwrap_err().to_string();
    assert!(err.contains("c.yaml:3:") && err.contains("DE (in `EU`)"), "{err}");
    let two_eu_nodes = yaml.replace("data_residency: DE", "data_residency: EU");
    let cfg = load(&two_eu_nodes).unwrap();
    assert_eq!(cfg.nodes[0].residency, cfg.nodes[1].residency);
}

#[test]
fn unassigned_country_codes_are_refused() {
    let yaml = "nodes: [{id: a, type: cloud, host: \"http://a\"}]\ngeofence: {deny: [ZZ, UK, KP]}\n";
    let err = load(yaml).unwrap_err();
    assert_eq!(err.0.len(), 2, "{err}");
    assert!(err.0[0].path == "geofence.deny[0]" && err.0[1].path == "geofence.deny[1]", "{err}");
}

#[test]
fn hosts_without_a_scheme_follow_the_documented_rule() {
    let cases = [
        ("192.168.1.100:5000", "http://192.168.1.100:5000"),
        ("10.0.0.5", "http://10.0.0.5"),
        ("127.0.0.1:11434", "http://127.0.0.1:11434"),
        ("[fd00::1]:8000", "http://[fd00::1]:8000"),
        ("localhost:8000", "http://localhost:8000"),
        ("gpu-box:8000", "http://gpu-box:8000"),
        ("vllm.internal:8000", "http://vllm.internal:8000"),
        ("api.openai.com", "https://api.openai.com"),
        ("8.8.8.8:8000", "https://8.8.8.8:8000"),
        ("10.0.0.5:443", "https://10.0.0.5:443"),
        ("api.example.com:80", "http://api.example.com:80"),
    ];
    for (written, used) in cases {
        let cfg = load(&format!("nodes: [{{id: a, type: cloud, host: \"{written}\"}}]\n")).unwrap();
        assert_eq!(cfg.nodes[0].base_url, used, "{written}");
        assert!(warned(&cfg, "nodes[0].host", "has no scheme"), "{written}: {:?}", cfg.warnings);
    }
    let cfg = load("nodes: [{id: a, type: cloud, host: \"http://a\"}]\n").unwrap();
    assert!(cfg.warnings.is_empty(), "a written scheme is not warned about");
}

#[test]
fn targets_select_by_what_describes_a_node() {
    let yaml = "nodes:\n  - {id: a, type: cloud, host: \"http://a\", provider: aws, region: us-east-1}\n  - {id: b, type: cloud, host: \"http://b\", provider: gcp, region: europe-west1}\n  - {id: c, type: edge, host: \"http://c\", location: cn-beijing}\nrouting:\n  rules:\n    - {match: {geo: US}, target: \"region:us-*\", fallback: [\"provider:gcp\"]}\n    - {match: {geo: CN}, target: \"location:cn-*\", fallback: [\"type:cloud\"]}\n";
    let cfg = load(yaml).unwrap();
    assert_eq!((cfg.rules[0].candidates.clone(), cfg.rules[0].fallback.clone()), (vec![0], vec![1]));
    assert_eq!((cfg.rules[1].candidates.clone(), cfg.rules[1].fallback.clone()), (vec![2], vec![0, 1]));
    let bad = yaml.replace("region:us-*", "region:mars-*").replace("provider:gcp", "colour:red");
    let err = load(&bad).unwrap_err().to_string();
    assert!(err.contains("`region:mars-*` selects no node: no node's region matches `mars-*`"), "{err}");
    assert!(err.contains("`colour:` is not a selector"), "{err}");
}

#[test]
fn a_target_naming_no_node_is_still_an_error_but_a_fallback_is_skipped() {
    let yaml = "nodes: [{id: a, type: cloud, host: \"http://a\"}]\nrouting:\n  rules:\n    - {match: {}, target: a, fallback: [b, \"x-*\"]}\n";
    let cfg = load(yaml).unwrap();
    assert!(cfg.rules[0].fallback.is_empty());
    assert!(warned(&cfg, "routing.rules[0].fallback[0]", "skipped"));
    assert!(warned(&cfg, "routing.rules[0].fallback[1]", "matches no node id"));
    let err = load(&yaml.replace("target: a", "target: b")).unwrap_err().to_string();
    assert!(err.contains("routing.rules[0].target: `b` is not the id of any node"), "{err}");
}

#[test]
fn every_error_comes_in_one_pass_type_errors_included() {
    // Six mistakes of different kinds: an unknown field, a wrong type, an
    // unknown variant, a missing field, a bad value and a bad reference.
    let yaml = "\
nodes:
  - id: a
    type: cloud
    host: \"http://a\"
    colour: blue
    max_concurrent: lots
  - id: b
    type: moon
    host: \"http://b\"
  - id: c
    type: cloud
routing:
  rules:
    - {match: {geo: ZZ}, target: nobody}
";
    let err = load(yaml).unwrap_err();
    let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    let expect = [
        ("c.yaml:5:", "nodes[0].colour: unknown field `colour`"),
        ("c.yaml:6:", "nodes[0].max_concurrent: invalid type"),
        ("c.yaml:8:", "nodes[1].type: unknown variant `moon`"),
        ("c.yaml:10:", "nodes[2].host: missing field `host`"),
        ("c.yaml:14:", "routing.rules[0].match.geo: `ZZ` is not a country"),
        ("c.yaml:14:", "routing.rules[0].target: `nobody` is not the id of any node"),
    ];
    assert_eq!(lines.len(), expect.len(), "{lines:#?}");
    for (line, (at, what)) in lines.iter().zip(expect) {
        assert!(line.starts_with(at) && line.contains(what), "{line} should start {at} and say {what}\n{lines:#?}");
    }
}

#[test]
fn a_wrong_shape_reports_once_not_its_insides() {
    let err = load("nodes: [\"just a string\", {id: b, type: cloud, host: \"http://b\"}]\nrouting: 7\n").unwrap_err();
    let lines: Vec<String> = err.0.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("nodes[0]: invalid type: string"), "{lines:#?}");
    assert!(lines[1].contains("routing: invalid type: integer"), "{lines:#?}");
}

#[test]
fn a_version_and_a_one_or_many_read_either_shape_and_name_what_they_expect() {
    let config = |version: &str, model: &str| {
        format!(
            "version: {version}\nnodes: [{{id: a, type: local, host: \"http://a\", models: [m]}}]\n\
             routing: {{rules: [{{match: {{model: {model}}}, target: a}}]}}\n"
        )
    };
    for (version, shown) in [("1", "1.0"), ("1.0", "1.0"), ("\"1.0\"", "1.0"), ("\"v2\"", "v2")] {
        for model in ["m", "[m, n]"] {
            let cfg = load(&config(version, model)).unwrap_or_else(|e| panic!("{version} {model}: {e}"));
            assert_eq!(cfg.version.as_deref(), Some(shown));
            let wanted: Vec<String> = model.trim_matches(['[', ']']).split(", ").map(String::from).collect();
            assert_eq!(cfg.rules[0].matcher.model.as_ref(), Some(&wanted));
        }
    }
    let lines = |text: &str| load(text).unwrap_err().0.iter().map(ToString::to_string).collect::<Vec<_>>();
    let wrong = lines(&config("[1]", "{x: 1}"));
    assert_eq!(wrong.len(), 2, "{wrong:#?}");
    assert!(wrong[0].starts_with("c.yaml:1:") && wrong[0].contains("expected a version such as"), "{wrong:#?}");
    assert!(wrong[1].contains("match.model: invalid type: map, expected a string or a list of strings"), "{wrong:#?}");
    let inside = lines(&config("1", "[m, [n]]"));
    assert!(inside[0].contains("match.model[1]: invalid type: sequence, expected a string"), "{inside:#?}");
}

#[test]
fn autoscaling_entries_are_validated() {
    let base = "nodes: [{id: a, type: cloud, host: \"http://a\", max_concurrent: 10}]\nautoscaling:\n";
    let ok = format!(
        "{base}  - {{node: a, metric: utilization, threshold: 80, action: scale_out, max_instances: 4}}\n  - {{node: a, metric: node_utilization, threshold: 30, action: scale_in, min_instances: 1}}\n"
    );
    let cfg = load(&ok).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    let crossed = ok.replace("threshold: 30", "threshold: 90");
    let err = load(&crossed).unwrap_err().to_string();
    assert!(err.contains("autoscaling[1].threshold") && err.contains("must be below the scale_out threshold"), "{err}");
    let fleet = format!("{base}  - {{node: a, metric: routing_distribution, threshold: 1, action: scale_out}}\n");
    assert!(load(&fleet).unwrap_err().to_string().contains("is not a node's metric"));
    let bounds = format!(
        "{base}  - {{node: a, metric: error_rate, threshold: 5, action: scale_out, min_instances: 3, max_instances: 2}}\n"
    );
    assert!(load(&bounds).unwrap_err().to_string().contains("min_instances (3) is larger than max_instances (2)"));
    let elsewhere = format!("{base}  - {{node: z, metric: error_rate, threshold: 5, action: scale_out}}\n");
    assert!(warned(&load(&elsewhere).unwrap(), "autoscaling[0].node", "skipped"));
}

#[test]
fn what_only_the_node_measures_is_read_from_its_metrics_url_or_warned_about() {
    let entry =
        "autoscaling:\n  - {node: a, metric: cpu_usage, threshold: 80, action: scale_out, for: 30s, cooldown: 2m}\n";
    let blind = format!("nodes: [{{id: a, type: cloud, host: \"http://a\"}}]\n{entry}");
    let cfg = load(&blind).unwrap();
    assert!(warned(&cfg, "autoscaling[0].metric", "metrics_url"), "{:?}", cfg.warnings);
    let seeing =
        format!("nodes: [{{id: a, type: cloud, host: \"http://a\", metrics_url: \"http://a:9100/metrics\"}}]\n{entry}");
    let cfg = load(&seeing).unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(cfg.nodes[0].metrics_url.as_deref(), Some("http://a:9100/metrics"));
    let a = &cfg.autoscaling[0];
    assert_eq!(
        (a.hysteresis(), a.cooldown().as_millis(), a.sustained.map(|d| d.as_millis())),
        (8.0, 120_000, Some(30_000))
    );
    let series = seeing.replace("threshold: 80", "series: 'vllm:num_requests_waiting{engine=\"0\"}', threshold: 80");
    assert!(load(&series).unwrap().warnings.is_empty());
    let bad_series = seeing.replace("threshold: 80", "series: 'x{engine=0}', threshold: 80");
    assert!(load(&bad_series).unwrap_err().to_string().contains("autoscaling[0].series"));
    let observed = seeing.replace("metric: cpu_usage", "metric: active_requests, series: x");
    assert!(load(&observed).unwrap_err().to_string().contains("observed by the router itself"));
    let no_url = seeing.replace("http://a:9100/metrics", "a:9100/metrics");
    assert!(load(&no_url).unwrap_err().to_string().contains("nodes[0].metrics_url"));
    let unlimited = blind.replace("metric: cpu_usage", "metric: utilization");
    assert!(load(&unlimited).unwrap_err().to_string().contains("node `a` has none"));
    let webhook =
        format!("{blind}monitoring: {{scaling: {{interval: 10ms, webhook: ftp://x, webhook_retries: 11}}}}\n");
    let err = load(&webhook).unwrap_err().to_string();
    for field in ["scaling.interval", "scaling.webhook:", "scaling.webhook_retries"] {
        assert!(err.contains(field), "{field} in {err}");
    }
    let secret = seeing.replace("http://a:9100/metrics", "http://user:pw@a:9100/metrics");
    assert!(load(&secret).unwrap_err().to_string().contains("credentials cannot go in it"));
    let eager = format!("{seeing}monitoring: {{scaling: {{interval: 5m}}}}\n");
    assert!(load(&eager).unwrap_err().to_string().contains("autoscaling[0].cooldown: must be at least"));
    // Two series of the node are two things: their thresholds are not compared.
    let queue = "  - {node: a, metric: queue, series: 'vllm:num_requests_waiting', threshold: 90, action: scale_in}\n";
    let two = format!("{seeing}{queue}");
    assert!(load(&two).is_ok(), "{:?}", load(&two).err().map(|e| e.to_string()));
    let same = two.replace("metric: queue, series: 'vllm:num_requests_waiting'", "metric: cpu_usage");
    assert!(load(&same).unwrap_err().to_string().contains("must be below the scale_out threshold"));
}

#[test]
fn a_provider_that_names_an_api_chooses_it_and_api_says_it_outright() {
    let yaml = "nodes:
  - {id: a, type: cloud, host: \"http://a\", provider: Anthropic}
  - {id: b, type: cloud, host: \"http://b\", provider: azure, api: openai}
  - {id: c, type: cloud, host: \"http://c\", provider: aws}
  - {id: d, type: cloud, host: \"http://d\", provider: azure, api_version: \"2024-06-01\"}
";
    let cfg = load(yaml).unwrap();
    let apis: Vec<Api> = cfg.nodes.iter().map(|n| n.api).collect();
    assert_eq!(apis, [Api::Anthropic, Api::OpenAi, Api::OpenAi, Api::Azure]);
    let misplaced = yaml.replace("provider: aws", "provider: aws, api_version: \"1\"");
    assert!(load(&misplaced).unwrap_err().to_string().contains("nodes[2].api_version: only a node speaking `azure`"));
    let bedrock = "nodes: [{id: a, type: cloud, host: \"http://a\", provider: bedrock}]\n";
    let err = load(bedrock).unwrap_err().to_string();
    assert!(err.contains("nodes[0].region") && err.contains("signed for it"), "{err}");
    let signed = load(&bedrock.replace("provider: bedrock", "provider: bedrock, region: us-east-1")).unwrap();
    assert_eq!(
        signed.nodes[0].aws_credentials_env.as_ref().map(|c| c.access_key_id.as_str()),
        Some("AWS_ACCESS_KEY_ID")
    );
}
