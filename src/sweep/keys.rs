//! Config keys as a sweep sees them: a dotted key looked up in the default config, a
//! command-line value as compact TOML text of that key's type, and a config flattened to
//! dotted keys (to compare a run's config with its plan).

use crate::config::{Config, KEY_DOCS};
use crate::error::{invalid, Result};
use std::collections::BTreeMap;

/// The default config as a TOML table (to look keys and their types up).
fn default_table() -> toml::Table {
    Config::schema_table()
}

/// The default value of a dotted key, or a clear error when it is not a config key.
pub(super) fn default_value(key: &str, flag: &str) -> Result<toml::Value> {
    let root = toml::Value::Table(default_table());
    let mut node = &root;
    for part in key.split('.') {
        node = node.get(part).ok_or_else(|| {
            let keys: Vec<&str> = KEY_DOCS.iter().map(|(k, _)| *k).collect();
            invalid(flag, key, &format!("a config key, one of {keys:?}"))
        })?;
    }
    match node {
        toml::Value::Table(_) => Err(invalid(
            flag,
            key,
            "a key inside a table, e.g. controller.alpha",
        )),
        v => Ok(v.clone()),
    }
}

/// Splits `a,b,[c,d],"e,f"` at the commas outside brackets and quotes.
pub(super) fn split_values(text: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quoted) = (Vec::new(), String::new(), 0i32, false);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur.trim().to_string());
    out
}

/// A command-line value as TOML text for `key`: a bare word becomes a string, and a single
/// value for a list key (model.hidden=64) becomes a list of one.
pub(super) fn normalise_value(raw: &str, default: &toml::Value) -> String {
    let parsed = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let value = match (default, parsed) {
        (toml::Value::Array(_), v @ toml::Value::Array(_)) => v,
        (toml::Value::Array(_), v) => toml::Value::Array(vec![v]),
        (_, v) => v,
    };
    value_text(&value)
}

/// Compact TOML text of a value.
fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::Array(a) => {
            let items: Vec<String> = a.iter().map(value_text).collect();
            format!("[{}]", items.join(", "))
        }
        v => v.to_string(),
    }
}

/// Keys the sweep sets itself.
pub(super) fn check_sweepable(key: &str, flag: &str) -> Result<()> {
    if key.starts_with("output.dir") || key.starts_with("output.name") {
        return Err(invalid(
            flag,
            key,
            "a key other than output.dir and output.name (the sweep places every run inside its folder)",
        ));
    }
    Ok(())
}

/// Flattens a TOML table into dotted keys -> value text.
fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            v => {
                out.insert(key, value_text(v));
            }
        }
    }
}

pub(super) fn flat(config: &Config) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    flatten(
        "",
        &toml::Table::try_from(config).expect("a config serialises"),
        &mut out,
    );
    out
}
