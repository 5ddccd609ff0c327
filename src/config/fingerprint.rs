//! A resolved config as dotted keys -> compact TOML values, and its SHA-256: what a run
//! folder records to verify a resume, and a sweep manifest per run.

use super::Config;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Compact TOML text of a value (`[64, 64]`, `0.1`, `"adam"`).
pub fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::Array(a) => {
            let items: Vec<String> = a.iter().map(value_text).collect();
            format!("[{}]", items.join(", "))
        }
        v => v.to_string(),
    }
}

/// SHA-256 of `bytes` as 64 hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex digits of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

impl Config {
    /// Every key of this config, dotted (`controller.alpha`), with its value as compact TOML.
    pub fn flat(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let table = toml::Table::try_from(self).expect("a config serialises");
        flatten("", &table, &mut out);
        out
    }

    /// SHA-256 of [`Config::flat`] ([`fingerprint`]): equal configs, equal fingerprints.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.flat())
    }
}

/// SHA-256 of a flat config as `key = value` lines.
pub fn fingerprint(flat: &BTreeMap<String, String>) -> String {
    let text: String = flat.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
    sha256_hex(text.as_bytes())
}

/// The keys whose values differ between a recorded config and `now`, as (key, recorded
/// value, value now); keys only one side knows (another lcsim version) are skipped.
pub fn changed_keys(
    recorded: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Vec<(String, String, String)> {
    recorded
        .iter()
        .filter_map(|(k, was)| {
            let is = now.get(k)?;
            (is != was).then(|| (k.clone(), was.clone(), is.clone()))
        })
        .collect()
}
