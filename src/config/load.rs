//! Reading a config file while remembering where every value came from.
//!
//! serde alone reports *what* is wrong but not *where* once the value has
//! left the parser. So the YAML event stream (JSON is read by the same parser,
//! since YAML 1.2 is a superset) is turned into a `serde_json::Value` together
//! with a map from each value's path (`routing.rules[2].target`) to its line
//! and column. Deserialization errors and validation errors both carry a path,
//! and the map turns it back into a position in the file.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in the config file, 1-based; line 0 when not known (a config
/// read by `RouterConfig::load_json`, which keeps no positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Line, starting at 1.
    pub line: usize,
    /// Column, starting at 1.
    pub column: usize,
}

impl Position {
    fn from_marker(m: &Marker) -> Self {
        Self { line: m.line(), column: m.col() + 1 }
    }
}

/// One thing wrong with a config, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given to the loader.
    pub file: String,
    /// Where in the file.
    pub position: Position,
    /// The path of the offending value, e.g. `routing.rules[0].target`; empty for syntax errors.
    pub path: String,
    /// What is wrong, as a sentence.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position.line {
            0 => write!(f, "{}: ", self.file)?,
            line => write!(f, "{}:{line}:{}: ", self.file, self.position.column)?,
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Everything wrong with a refused config. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where each value of a parsed document sits in its file.
#[derive(Debug, Default)]
pub struct Positions {
    file: String,
    by_path: HashMap<String, Position>,
    /// No positions were kept ([`Positions::unlocated`]): positions are unknown (line 0).
    unlocated: bool,
}

impl Positions {
    /// No positions: errors about `file` name their values by path alone.
    pub fn unlocated(file: &str) -> Self {
        Self { file: file.to_string(), by_path: HashMap::new(), unlocated: true }
    }

    /// The position of `path`, or of its nearest ancestor that has one: the
    /// document's start when none has (an empty file), unknown (line 0) when
    /// the document's positions were not kept.
    pub fn locate(&self, path: &str) -> Position {
        let mut p = path;
        loop {
            if let Some(pos) = self.by_path.get(p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(cut) => p = &p[..cut],
                None => {
                    let start = if self.unlocated { Position::default() } else { Position { line: 1, column: 1 } };
                    return self.by_path.get("").copied().unwrap_or(start);
                }
            }
        }
    }

    /// An error about the value at `path`.
    pub fn error(&self, path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            position: self.locate(path),
            path: path.to_string(),
            message: message.into(),
        }
    }
}

/// Refuses JSON text that gives a key twice in the same object, which
/// serde_json would read as its last value. The error carries serde_json's
/// line and column. A pass over the text that keeps nothing but each
/// object's keys.
pub fn no_duplicate_keys(text: &str) -> Result<(), serde_json::Error> {
    use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};

    struct Unique;

    impl<'de> DeserializeSeed<'de> for Unique {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for Unique {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
            while items.next_element_seed(Unique)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(A::Error::custom(format!("`{key}` appears twice in the same object")));
                }
                map.next_value_seed(Unique)?;
            }
            Ok(())
        }
    }

    let mut d = serde_json::Deserializer::from_slice(text.as_bytes());
    Unique.deserialize(&mut d)?;
    d.end()
}

/// Parses YAML or JSON text into a value and the positions of its parts.
pub fn parse_document(file: &str, text: &str) -> Result<(Value, Positions), ConfigErrors> {
    let mut builder =
        Builder { positions: Positions { file: file.to_string(), ..Positions::default() }, ..Builder::default() };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        return Err(ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            position: Position::from_marker(e.marker()),
            path: String::new(),
            message: format!("this is not valid YAML or JSON: {}", e.info()),
        }]));
    }
    if let Some(err) = builder.error {
        return Err(ConfigErrors(vec![err]));
    }
    match builder.root {
        Some(root) => Ok((root, builder.positions)),
        None => Err(ConfigErrors(vec![builder.positions.error("", "the config file is empty")])),
    }
}

/// What deserializing a document found: the value (from a repaired copy of
/// the document when something was wrong), and every type error, one per
/// value, each located.
pub struct Deserialized<T> {
    /// The deserialized config; `None` only when a mistake could not be stepped over.
    pub value: Option<T>,
    /// The type errors (unknown fields, wrong types, missing fields), in the order found.
    pub errors: Vec<ConfigError>,
}

/// Whether `path` is, or lies inside, a value that already has one of
/// `errors`: what else is said of it is a consequence, not news.
pub fn covered(errors: &[ConfigError], path: &str) -> bool {
    errors.iter().any(|e| is_within(path, &e.path))
}

/// Whether `path` is `outer` or lies under it.
fn is_within(path: &str, outer: &str) -> bool {
    outer.is_empty() || path.strip_prefix(outer).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// The most type errors one file reports; past this, loading stops.
const MOST_TYPE_ERRORS: usize = 100;

/// Deserializes `value` into `T`, reporting every type error rather than the
/// first. serde stops at the first mistake, so after each one the value in
/// question is taken out of the document (an optional field then takes its
/// default) or replaced by a stand-in of another shape, and deserializing is
/// tried again. Each value is reported once, and nothing inside a reported
/// value is reported again, so a stand-in never produces errors of its own.
pub fn deserialize_all<T: serde::de::DeserializeOwned>(mut value: Value, positions: &Positions) -> Deserialized<T> {
    let mut errors: Vec<ConfigError> = Vec::new();
    // The value being repaired, and the repairs not yet tried on it.
    let mut repairing: Option<(Vec<Step>, Vec<Option<Value>>, bool)> = None;
    // Enough rounds for every reported value to try every repair.
    for _ in 0..MOST_TYPE_ERRORS * (STAND_INS.len() + 3) {
        let err = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) => return Deserialized { value: Some(t), errors },
            Err(err) => err,
        };
        let mut steps = steps_of(err.path());
        let message = err.into_inner().to_string();
        let missing = missing_field(&message).map(str::to_string);
        if let Some(field) = &missing {
            steps.push(Step::Key(field.clone()));
        }
        let (mut untried, mut hinted) = match repairing.take() {
            Some((same, untried, hinted)) if same == steps => (untried, hinted),
            _ => {
                let path = steps_string(&steps);
                if !covered(&errors, &path) {
                    if errors.len() == MOST_TYPE_ERRORS {
                        break;
                    }
                    errors.push(positions.error(&path, message.clone()));
                }
                // Taken out first, where it can be (an optional field then
                // takes its default); an absent field starts at the stand-ins.
                let mut repairs: Vec<Option<Value>> = STAND_INS.iter().rev().map(|make| Some(make())).collect();
                if missing.is_none() && matches!(steps.last(), Some(Step::Key(_))) {
                    repairs.push(None);
                }
                (repairs, false)
            }
        };
        // serde names the variants an enum would take: try the first.
        if !hinted && let Some(variant) = expected_variant(&message) {
            untried.push(Some(variant));
            hinted = true;
        }
        let Some(repair) = untried.pop() else { break };
        if !replace(&mut value, &steps, repair) {
            break;
        }
        repairing = Some((steps, untried, hinted));
    }
    if errors.is_empty() {
        errors.push(positions.error("", "this config could not be read"));
    }
    Deserialized { value: None, errors }
}

/// The first variant in serde's "unknown variant `x`, expected one of `a`,
/// `b`" (or "expected `a` or `b`") message.
fn expected_variant(message: &str) -> Option<Value> {
    let rest = message.strip_prefix("unknown variant `")?;
    let (_, expected) = rest.split_once("expected ")?;
    let first = expected.trim_start_matches("one of ").strip_prefix('`')?;
    first.split_once('`').map(|(v, _)| Value::String(v.to_string()))
}

/// Values of each JSON shape, tried in turn in place of a wrong one.
const STAND_INS: [fn() -> Value; 6] = [
    || Value::String(String::new()),
    || Value::Number(0.into()),
    || Value::Bool(false),
    || Value::Array(Vec::new()),
    || Value::Object(Map::new()),
    || Value::Null,
];

/// The field named by serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split_once('`').map(|(field, _)| field)
}

/// One step into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

fn steps_of(path: &serde_path_to_error::Path) -> Vec<Step> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Enum { .. } | Segment::Unknown => None,
        })
        .collect()
}

fn steps_string(steps: &[Step]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Index(i) => out.push_str(&format!("[{i}]")),
            Step::Key(k) => push_key(&mut out, k),
        }
    }
    out
}

/// Puts `with` at `steps` in `root` (a field is added if absent), or takes
/// the value there out when `with` is `None`. False when the place cannot be
/// reached.
fn replace(root: &mut Value, steps: &[Step], with: Option<Value>) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        return match with {
            Some(v) => {
                *root = v;
                true
            }
            None => false,
        };
    };
    let mut here = root;
    for step in parents {
        here = match (step, here) {
            (Step::Key(k), Value::Object(map)) => match map.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            (Step::Index(i), Value::Array(items)) => match items.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, here, with) {
        (Step::Key(k), Value::Object(map), None) => map.remove(k).is_some(),
        (Step::Key(k), Value::Object(map), Some(v)) => {
            map.insert(k.clone(), v);
            true
        }
        (Step::Index(i), Value::Array(items), Some(v)) => match items.get_mut(*i) {
            Some(slot) => {
                *slot = v;
                true
            }
            None => false,
        },
        _ => false,
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

enum Frame {
    Seq { path: String, items: Vec<Value>, anchor: usize },
    Map { path: String, map: Map<String, Value>, key: Option<String>, anchor: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    positions: Positions,
    root: Option<Value>,
    error: Option<ConfigError>,
}

impl Builder {
    /// The path of the value that starts now, under the current container.
    fn child_path(&self) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Frame::Seq { path, items, .. }) => format!("{path}[{}]", items.len()),
            Some(Frame::Map { path, key, .. }) => {
                let mut p = path.clone();
                push_key(&mut p, key.as_deref().unwrap_or_default());
                p
            }
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn fail(&mut self, path: &str, mark: &Marker, message: String) {
        if self.error.is_none() {
            self.error = Some(ConfigError {
                file: self.positions.file.clone(),
                position: Position::from_marker(mark),
                path: path.to_string(),
                message,
            });
        }
    }

    fn attach(&mut self, value: Value, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, .. }) => {
                if let Some(k) = key.take() {
                    map.insert(k, value);
                }
            }
        }
    }

    fn start_key(&mut self, key: String, mark: &Marker) {
        let Some(Frame::Map { path, map, key: slot, .. }) = self.stack.last_mut() else { return };
        let mut full = path.clone();
        push_key(&mut full, &key);
        if map.contains_key(&key) {
            let first = self.positions.by_path.get(&full).copied().unwrap_or_default();
            let message = format!("`{key}` appears twice in the same mapping (first on line {})", first.line);
            self.fail(&full, mark, message);
            return;
        }
        *slot = Some(key);
        self.positions.by_path.insert(full, Position::from_marker(mark));
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                if self.expecting_key() {
                    self.start_key(text, &mark);
                    return;
                }
                let path = self.child_path();
                self.positions.by_path.entry(path.clone()).or_insert(Position::from_marker(&mark));
                let quoted = style != TScalarStyle::Plain || tag.is_some_and(|t| t.suffix == "str");
                match scalar_value(text, quoted) {
                    Ok(v) => self.attach(v, anchor),
                    Err(message) => self.fail(&path, &mark, message),
                }
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.expecting_key() {
                    let path = self.child_path();
                    self.fail(&path, &mark, "mapping keys must be plain strings".into());
                    return;
                }
                let path = self.child_path();
                self.positions.by_path.entry(path.clone()).or_insert(Position::from_marker(&mark));
                self.stack.push(if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq { path, items: Vec::new(), anchor }
                } else {
                    Frame::Map { path, map: Map::new(), key: None, anchor }
                });
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq { items, anchor, .. }) => self.attach(Value::Array(items), anchor),
                Some(Frame::Map { map, anchor, .. }) => self.attach(Value::Object(map), anchor),
                None => {}
            },
            Event::Alias(id) => {
                let path = self.child_path();
                match self.anchors.get(&id).cloned() {
                    Some(v) if !self.expecting_key() => self.attach(v, 0),
                    _ => self.fail(&path, &mark, "this alias refers to no anchor usable here".into()),
                }
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {}
        }
    }
}

/// YAML 1.2 core-schema resolution of a plain scalar; quoted scalars are strings.
fn scalar_value(text: String, quoted: bool) -> Result<Value, String> {
    if quoted {
        return Ok(Value::String(text));
    }
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Value::Number(i.into()));
    }
    let looks_numeric = text.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.')
        && text.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c));
    if looks_numeric && let Ok(f) = text.parse::<f64>() {
        return Number::from_f64(f).map(Value::Number).ok_or_else(|| format!("`{text}` is not a finite number"));
    }
    Ok(Value::String(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_values_keep_their_positions() {
        let text = "a: 1\nlist:\n  - x: true\n  - y: \"2\"\n";
        let (v, pos) = parse_document("c.yaml", text).unwrap();
        assert_eq!(v["a"], 1);
        assert_eq!(v["list"][0]["x"], true);
        assert_eq!(v["list"][1]["y"], "2");
        assert_eq!(pos.locate("list[1].y"), Position { line: 4, column: 5 });
        assert_eq!(pos.locate("list[1].y.deeper"), Position { line: 4, column: 5 });
    }

    #[test]
    fn json_is_read_by_the_same_parser() {
        let text = "{\n  \"nodes\": [\n    {\"id\": \"a\", \"n\": 2.5}\n  ]\n}";
        let (v, pos) = parse_document("c.json", text).unwrap();
        assert_eq!(v["nodes"][0]["n"], 2.5);
        assert_eq!(pos.locate("nodes[0].n").line, 3);
    }

    #[test]
    fn country_codes_like_no_stay_strings() {
        let (v, _) = parse_document("c.yaml", "geo: [NO, 'on', yes]").unwrap();
        assert_eq!(v["geo"], serde_json::json!(["NO", "on", "yes"]));
    }

    #[test]
    fn duplicate_keys_are_refused_with_both_lines() {
        let err = parse_document("c.yaml", "a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.0[0].position.line, 3);
        assert!(err.0[0].message.contains("first on line 1"), "{}", err);
    }

    #[test]
    fn syntax_errors_say_where() {
        let err = parse_document("c.yaml", "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.to_string().starts_with("c.yaml:"), "{err}");
        assert!(err.0[0].message.contains("not valid YAML"), "{err}");
    }

    #[test]
    fn empty_file_is_refused() {
        let err = parse_document("c.yaml", "# nothing\n").unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
