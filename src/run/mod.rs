//! Run folders: the resolved config, seeds and version next to metrics, checkpoints,
//! final parameters and figures. Every file is written atomically (temp file + rename);
//! a run counts as finished only once summary.json exists.
//!
//! ```text
//! RUN/config.toml     resolved config          RUN/metrics.csv   one row per epoch
//! RUN/run.json        version, seeds, command, RUN/checkpoint.npz  state after the last epoch
//!                     config and data fingerprints, changes made on resume
//! RUN/.lock           held by the process training the run (one at a time)
//! RUN/params.npz      final parameters         RUN/summary.json  written last
//! RUN/feedback.npz    final feedback weights (lcp-kp: B, G; lcp-lf: Q)
//! RUN/figures/        learning curves, H, solver statistics
//! ```
//!
//! A resume verifies the past: config.toml must still be the config recorded in run.json
//! and the data must hash as they did; only [`RESUME_KEYS`] may change, explicitly
//! (`--resume RUN --set training.epochs=N`), and each change is recorded in run.json.

mod folder;
mod start;

pub use folder::*;
pub use start::*;

use crate::error::{invalid, io_error, Result};
use crate::train::meta::MetaTest;
use serde::Serialize;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, synced to
/// disk, then renamed over `path` ([`crate::io::atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(crate::io::atomic::write_bytes_atomic(path, bytes)?)
}

/// Writes `value` as pretty-printed JSON to `path` atomically.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON serialises");
    write_atomic(path, text.as_bytes())
}

/// Creates `dir` (and its parents) for results; `flag` names it in errors.
pub fn create_out_dir(flag: &str, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    if !dir.is_dir() {
        return Err(invalid(flag, dir.display(), "a directory"));
    }
    Ok(())
}

/// What summary.json holds.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub lcsim_version: String,
    pub run: String,
    pub method: String,
    pub epochs: usize,
    pub final_test_loss: f64,
    pub final_test_accuracy: f64,
    pub final_mean_h: f64,
    pub total_wall_time_s: f64,
    pub figures: Vec<String>,
    /// Meta-learning runs: the meta-test (query loss after fine-tuning on new tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta_test: Option<MetaTest>,
}
