//! `[output]`: where a run folder goes and what it draws.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[output]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Parent directory of run folders.
    pub dir: PathBuf,
    /// Run folder name; empty = method-model-data-seed.
    pub name: String,
    /// Draw figures at the end of the run.
    pub figures: bool,
    pub figure_format: crate::io::figure_format::FigureFormat,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: PathBuf::from("runs"),
            name: String::new(),
            figures: true,
            figure_format: crate::io::figure_format::FigureFormat::Png,
        }
    }
}
