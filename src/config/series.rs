//! A series on a node's own Prometheus endpoint (`nodes[].metrics_url`),
//! as an `autoscaling` entry names it: `vllm:num_requests_waiting`, or with
//! labels, `node_load1{instance="gpu-1"}`. Reading it finds the samples of
//! that name whose labels include the ones written, in the text exposition
//! format (version 0.0.4, which OpenMetrics text also parses as), and
//! averages them: a node that reports one value per GPU is read as their mean.

/// A metric name and the labels its samples must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl Series {
    /// Parses `name` or `name{label="value",...}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (name, rest) = split_name(text);
        if name.is_empty() {
            return Err(format!(
                "`{text}` is not a series: write a metric name such as `vllm:num_requests_waiting`, \
                 with labels if need be: `node_load1{{instance=\"gpu-1\"}}`"
            ));
        }
        let labels = match rest.trim() {
            "" => Vec::new(),
            braces => match parse_labels(braces) {
                Some((labels, "")) => labels,
                _ => {
                    return Err(format!(
                        "`{text}`: the labels must be written `{{name=\"value\", ...}}` and end the series"
                    ));
                }
            },
        };
        Ok(Self { name: name.to_string(), labels })
    }

    /// The mean of the samples of this series in `exposition`, or `None`
    /// when there are none. Lines that do not parse are passed over.
    pub fn read(&self, exposition: &str) -> Option<f64> {
        let (mut sum, mut count) = (0.0, 0u32);
        for line in exposition.lines() {
            let line = line.trim_start();
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (name, rest) = split_name(line);
            if name != self.name {
                continue;
            }
            let rest = rest.trim_start();
            let (labels, rest) = if rest.starts_with('{') {
                match parse_labels(rest) {
                    Some(parsed) => parsed,
                    None => continue,
                }
            } else {
                (Vec::new(), rest)
            };
            if !self.labels.iter().all(|want| labels.contains(want)) {
                continue;
            }
            let Some(value) = rest.split_ascii_whitespace().next().and_then(parse_value) else { continue };
            if value.is_finite() {
                sum += value;
                count += 1;
            }
        }
        (count > 0).then(|| sum / f64::from(count))
    }
}

impl std::fmt::Display for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if !self.labels.is_empty() {
            let labels: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            write!(f, "{{{}}}", labels.join(","))?;
        }
        Ok(())
    }
}

/// A metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) at the start of `text`, and what follows.
fn split_name(text: &str) -> (&str, &str) {
    let end = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())))
        .map_or(text.len(), |(i, _)| i);
    text.split_at(end)
}

/// `{a="x",b="y"}` at the start of `text` (a trailing comma allowed, values
/// with `\\`, `\"` and `\n` escapes), and what follows it.
fn parse_labels(text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut rest = text.strip_prefix('{')?;
    let mut labels = Vec::new();
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = split_name(rest);
        if name.is_empty() || name.contains(':') {
            return None;
        }
        let quoted = after.trim_start().strip_prefix('=')?.trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let close = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        rest = quoted[close + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// A sample value: a float, or `NaN`, `+Inf`, `-Inf`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VLLM: &str = r#"# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.0
# HELP node_cpu_usage CPU in use, percent.
# TYPE node_cpu_usage gauge
node_cpu_usage{cpu="0",host="a \"quoted\" \\ name, with } inside"} 80
node_cpu_usage{cpu="1",host="b",} 90 1700000000000
node_cpu_usage_total 5
node_cpu_usage{cpu="2"} NaN
"#;

    #[test]
    fn a_series_is_read_by_name_and_labels_and_averaged() {
        assert_eq!(Series::parse("vllm:num_requests_waiting").unwrap().read(VLLM), Some(7.0));
        let all = Series::parse("node_cpu_usage").unwrap();
        assert_eq!(all.read(VLLM), Some(85.0), "the mean of 80 and 90; NaN is passed over");
        let one = Series::parse("node_cpu_usage{cpu=\"1\"}").unwrap();
        assert_eq!(one.read(VLLM), Some(90.0));
        let quoted = Series::parse(r#"node_cpu_usage{host="a \"quoted\" \\ name, with } inside"}"#).unwrap();
        assert_eq!(quoted.labels[0].1, r#"a "quoted" \ name, with } inside"#);
        assert_eq!(quoted.read(VLLM), Some(80.0));
        assert_eq!(Series::parse("node_cpu_usage{cpu=\"9\"}").unwrap().read(VLLM), None);
        assert_eq!(Series::parse("absent").unwrap().read(VLLM), None);
        assert_eq!(one.to_string(), "node_cpu_usage{cpu=\"1\"}");
    }

    #[test]
    fn bad_selectors_and_hostile_text_are_refused_without_panicking() {
        for bad in ["", "{a=\"b\"}", "x{a=b}", "x{a=\"b\"", "x{a=\"b\"} y", "9lives", "x{a:b=\"c\"}"] {
            assert!(Series::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let s = Series::parse("x").unwrap();
        for text in ["x{", "x{a=\"", "x{a=\"\\", "x{=\"\"} 1", "x 1e999999", "x", "x {a=\"é\"} 2", "x{a=\"é\"} 3"] {
            let _ = s.read(text);
        }
        assert_eq!(s.read("x{a=\"é\"} 3\nx 1"), Some(2.0));
    }
}
