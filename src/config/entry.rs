//! The ways into a config: [`RouterConfig::load`] for YAML or JSON with
//! every mistake located, and for the Workers build, which carries no YAML
//! parser, [`RouterConfig::load_to_json`] (at build time, and by `edge-router
//! check --json`) and [`RouterConfig::load_json`] (in the Worker). Each reads
//! and deserializes, then validates and compiles (`validate.rs`).

use super::compiled::RouterConfig;
use super::load::{ConfigError, ConfigErrors, Position, Positions, deserialize_all, no_duplicate_keys, parse_document};
use super::types::ConfigFile;

impl RouterConfig {
    /// Parses, validates and compiles a config. `file` names it in errors.
    pub fn load(file: &str, text: &str) -> Result<Self, ConfigErrors> {
        let (value, positions) = parse_document(file, text)?;
        let read = deserialize_all::<ConfigFile>(value, &positions);
        let Some(raw) = read.value else { return Err(ConfigErrors(read.errors)) };
        Self::validated(raw, &positions, read.errors)
    }

    /// A config for the Workers build: [`load`](Self::load), refused as
    /// well when that build would refuse it ([`workers_refusal`](Self::workers_refusal)),
    /// and the same document as compact JSON, what [`load_json`](Self::load_json)
    /// reads (the Worker bundles it, and reads its KV namespace so, carrying
    /// no YAML parser). `worker/build.rs` and `edge-router check --json` call it.
    pub fn load_to_json(file: &str, text: &str) -> Result<(Self, String), ConfigErrors> {
        let config = Self::load(file, text)?;
        let (value, positions) = parse_document(file, text)?;
        if let Some((path, why)) = config.workers_refusal() {
            return Err(ConfigErrors(vec![positions.error(path, why)]));
        }
        Ok((config, value.to_string()))
    }

    /// The Workers build's reader: a config written as JSON, read with
    /// serde_json alone (no YAML parser, and no record of where each value
    /// sits), and refused when that build would refuse it
    /// ([`workers_refusal`](Self::workers_refusal)). The first type error
    /// is reported with its line and column (serde stops there); what
    /// validation finds is named by its path.
    pub fn load_json(file: &str, text: &str) -> Result<Self, ConfigErrors> {
        // serde_json keeps the last of a key given twice in a map (`auth.tenants`, say); the
        // YAML reader refuses that, and so does this.
        let raw = no_duplicate_keys(text).and_then(|()| serde_json::from_slice::<ConfigFile>(text.as_bytes()));
        let raw = raw.map_err(|e| {
            let message = e.to_string();
            // serde_json ends its messages with where; that is the error's position here.
            let message = match message.rsplit_once(" at line ") {
                Some((what, _)) => what.to_string(),
                None => message,
            };
            let message =
                if e.is_syntax() || e.is_eof() { format!("this is not valid JSON: {message}") } else { message };
            let position = Position { line: e.line(), column: e.column() };
            ConfigErrors(vec![ConfigError { file: file.to_string(), position, path: String::new(), message }])
        })?;
        let positions = Positions::unlocated(file);
        let config = Self::validated(raw, &positions, Vec::new())?;
        match config.workers_refusal() {
            Some((path, why)) => Err(ConfigErrors(vec![positions.error(path, why)])),
            None => Ok(config),
        }
    }
}
