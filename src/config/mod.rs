//! Configuration: the file format, loading with positions, and validation.
//!
//! `RouterConfig::load` is the only way in: parse, deserialize, validate,
//! compile. Any error refuses the whole file, so a config is never half
//! applied.

mod duration;
mod load;
mod net;
mod types;
mod validate;

pub use duration::DurationSpec;
pub use load::{ConfigError, ConfigErrors, Position};
pub use net::CidrBlock;
pub use types::*;
pub use validate::{Node, RouterConfig, Warning};

/// The JSON Schema of the config file, for editors.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(ConfigFile);
    serde_json::to_value(schema).unwrap_or_default()
}
