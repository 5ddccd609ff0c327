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
    let parts: Vec<&str> = key.split('.').collect();
    // The key must name a field of the schema.
    let mut known = &defaults;
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
            Some(_) if i + 1 == parts.len() => {}
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
    let value = format!("v = {}", raw.trim())
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.trim().to_string()));
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
