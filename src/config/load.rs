//! Reading a config: the TOML file, `--set` overrides on top, then serde (a type error
//! names its key) and validation.

use super::overrides::apply_override;
use super::Config;
use crate::error::{invalid, io_error, Result};
use std::path::Path;

impl Config {
    /// Reads a TOML file and applies `key=value` overrides (dotted keys, TOML values;
    /// a value that is not valid TOML is taken as a string).
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Config> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(io_error(p))?;
                text.parse::<toml::Table>().map_err(|e| {
                    let place = e.span().map_or(String::new(), |s| {
                        let line = text[..s.start].matches('\n').count() + 1;
                        let key = key_at(&text, s.start);
                        let at = text[s.clone()].lines().next().unwrap_or("").trim();
                        let last = key.rsplit('.').next().unwrap_or("");
                        match at {
                            "" => format!(" at line {line} (`{key}`)"),
                            at if at == last => format!(" at line {line}: `{key}`"),
                            at => format!(" at line {line} (`{key}`: `{at}`)"),
                        }
                    });
                    invalid(
                        &p.display().to_string(),
                        format!("{}{place}", e.message()),
                        "a TOML file (see `lcsim config`)",
                    )
                })?
            }
            None => toml::Table::new(),
        };
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let source = path.map_or("--set".to_string(), |p| p.display().to_string());
        // Through text, so that a type error carries a span that names its key.
        let text = toml::to_string(&table).expect("a TOML table serialises");
        let config: Config = toml::from_str(&text).map_err(|e| {
            let key = e.span().map(|s| key_at(&text, s.start)).unwrap_or_default();
            invalid(
                &format!("{source}: {key}"),
                e.message(),
                "keys and types as in `lcsim config`",
            )
        })?;
        let config = config.resolved();
        config.validate()?;
        Ok(config)
    }
}

/// The dotted key (`section.key`) of the line holding byte `offset` of a TOML text.
fn key_at(text: &str, offset: usize) -> String {
    let mut section = String::new();
    let mut start = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.trim_matches(['[', ']']).to_string();
        }
        if offset < start + line.len() {
            let key = trimmed.split('=').next().unwrap_or("").trim();
            return if trimmed.starts_with('[') || section.is_empty() {
                section
            } else {
                format!("{section}.{key}")
            };
        }
        start += line.len();
    }
    section
}
