//! Config keys as a sweep sees them: a dotted key looked up in the default config, and a
//! command-line value as compact TOML text of that key's type.

use crate::config::{parse_value, value_text, Config, KEY_DOCS};
use crate::error::{invalid, Result};

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
    value_text(&parse_value(raw, default))
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
