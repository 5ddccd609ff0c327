//! `--set key=value`: one override of a config key, checked against the schema.

use super::Config;
use crate::error::{invalid, Result};

/// Applies one `a.b.c=value` override to a TOML table; the key must exist in the schema.
pub(super) fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| invalid("--set", assignment, "key=value, e.g. controller.alpha=0.05"))?;
    let key = key.trim();
    let defaults = Config::schema_table();
    let raw = raw.trim();
    let parts: Vec<&str> = key.split('.').collect();
    // The key must name a field of the schema.
    let mut known = &defaults;
    let mut default = &toml::Value::Boolean(false);
    for (i, part) in parts.iter().enumerate() {
        match known.get(*part) {
            Some(toml::Value::Table(t)) if i + 1 < parts.len() => known = t,
            Some(toml::Value::Table(t)) => {
                let keys: Vec<&String> = t.keys().collect();
                return Err(invalid(
                    "--set",
                    key,
                    &format!("a key inside the table `{key}`, one of {keys:?}"),
                ));
            }
            Some(v) if i + 1 == parts.len() => default = v,
            _ => {
                let keys: Vec<&String> = known.keys().collect();
                return Err(invalid(
                    "--set",
                    key,
                    &format!(
                        "a config key; at `{}` the keys are {keys:?}",
                        parts[..i].join(".")
                    ),
                ));
            }
        }
    }
    let value = parse_value(raw, default);
    if let toml::Value::String(s) = &value {
        let overflows = s.parse::<f64>().is_ok_and(f64::is_infinite);
        if overflows && s.contains(|c: char| c.is_ascii_digit()) && !default.is_str() {
            return Err(invalid(
                key,
                s,
                "a finite number: this one is beyond the largest 64-bit float, about 1.8e308",
            ));
        }
    }
    let mut node = table;
    for part in &parts[..parts.len() - 1] {
        let entry = node
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(invalid("--set", key, "a key inside a table")),
        };
    }
    node.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// A command-line value for a key whose default is `default`: TOML, else a bare word taken
/// as a string; a single value for a list key (`model.hidden=64`) becomes a list of one.
pub fn parse_value(raw: &str, default: &toml::Value) -> toml::Value {
    let parsed = format!("v = {}", raw.trim())
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
    match (default, parsed) {
        (toml::Value::Array(_), v @ toml::Value::Array(_)) => v,
        (toml::Value::Array(_), v) => toml::Value::Array(vec![v]),
        (_, v) => v,
    }
}
