//! What a training run records per epoch, and its CSV form (metrics.csv), which the
//! figures are drawn from.

use crate::error::{io_error, LcsimError, Result};
use crate::io::csv_text::csv_text;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One row of metrics.csv. Quantities not measured in an epoch (test metrics between
/// evaluations, H for the gradient baselines) are NaN.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// Epoch number, from 1.
    pub epoch: usize,
    /// Mean loss of the free equilibria of the training batches (before each update).
    pub train_loss: f64,
    /// Accuracy of the free equilibria on the training batches.
    pub train_accuracy: f64,
    /// Mean loss of the free equilibria on the test split.
    pub test_loss: f64,
    /// Accuracy on the test split.
    pub test_accuracy: f64,
    /// Mean control magnitude H = 1/2 |psi*|^2 per sample (LCP methods).
    pub mean_h: f64,
    /// Mean steps of the controlled (LCP) or adjoint (RBP) solves (iterations of an accelerated
    /// solver, or the integrator's steps for samples its fallback solved).
    pub mean_steps: f64,
    /// Largest number of steps of one such solve.
    pub max_steps: f64,
    /// Fraction of those solves that did not converge.
    pub fraction_unconverged: f64,
    /// Fraction of free solves that did not converge.
    pub fraction_free_unconverged: f64,
    /// Samples whose update was skipped (diverged or unconverged, by the failure policy).
    pub skipped_samples: usize,
    /// Learning rate at the end of the epoch.
    pub learning_rate: f64,
    /// Wall-clock seconds of the epoch (training and evaluation).
    pub wall_time_s: f64,
    /// LCP-KP at the end of the epoch: angle in degrees between the feedback weights B and
    /// W^T (NaN for other methods).
    pub feedback_angle_w: f64,
    /// LCP-KP: angle in degrees between G and D^T (NaN for other methods).
    pub feedback_angle_d: f64,
    /// Fraction of controlled solves that ended at a fold of the branch
    /// (`method.equilibrium = "branch"`; 0 for flow, NaN for the gradient baselines).
    pub fraction_folds: f64,
    /// Fraction of accelerated solves (free and controlled) whose equilibrium the flow
    /// certificate rejected (their fallback's result was used; NaN without solves to certify).
    pub fraction_uncertified: f64,
}

/// Column names of metrics.csv, in order (tables written before the feedback columns
/// existed have the first 13, those before the fold and certificate columns the first 15;
/// they are read with NaN in the missing ones).
pub const COLUMNS: [&str; 17] = [
    "epoch",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "mean_h",
    "mean_steps",
    "max_steps",
    "fraction_unconverged",
    "fraction_free_unconverged",
    "skipped_samples",
    "learning_rate",
    "wall_time_s",
    "feedback_angle_w",
    "feedback_angle_d",
    "fraction_folds",
    "fraction_uncertified",
];

/// Widths of older tables: before the feedback angles, before the folds and certificates.
const OLD_COLUMNS: [usize; 2] = [13, 15];

impl EpochMetrics {
    fn values(&self) -> [f64; 17] {
        [
            self.epoch as f64,
            self.train_loss,
            self.train_accuracy,
            self.test_loss,
            self.test_accuracy,
            self.mean_h,
            self.mean_steps,
            self.max_steps,
            self.fraction_unconverged,
            self.fraction_free_unconverged,
            self.skipped_samples as f64,
            self.learning_rate,
            self.wall_time_s,
            self.feedback_angle_w,
            self.feedback_angle_d,
            self.fraction_folds,
            self.fraction_uncertified,
        ]
    }

    fn from_values(v: &[f64]) -> Self {
        EpochMetrics {
            epoch: v[0] as usize,
            train_loss: v[1],
            train_accuracy: v[2],
            test_loss: v[3],
            test_accuracy: v[4],
            mean_h: v[5],
            mean_steps: v[6],
            max_steps: v[7],
            fraction_unconverged: v[8],
            fraction_free_unconverged: v[9],
            skipped_samples: v[10] as usize,
            learning_rate: v[11],
            wall_time_s: v[12],
            feedback_angle_w: v.get(13).copied().unwrap_or(f64::NAN),
            feedback_angle_d: v.get(14).copied().unwrap_or(f64::NAN),
            fraction_folds: v.get(15).copied().unwrap_or(f64::NAN),
            fraction_uncertified: v.get(16).copied().unwrap_or(f64::NAN),
        }
    }
}

/// The CSV text of a metrics table (header + one row per epoch; full f64 precision in
/// Rust's `{:?}` form: `1.0`, `1e-7`, `NaN`, `inf`).
pub fn to_csv(rows: &[EpochMetrics]) -> String {
    csv_text(
        COLUMNS,
        rows.iter().map(|r| r.values().map(|v| format!("{v:?}"))),
    )
}

/// Parses metrics.csv as written by [`to_csv`] (also the 13 or 15 columns of older tables; blank
/// lines are skipped, cells may be padded with spaces).
pub fn read_csv(path: &Path) -> Result<Vec<EpochMetrics>> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let bad = |line: u64, why: String| LcsimError::InvalidValue {
        field: format!("{}:{line}", path.display()),
        value: why,
        allowed: format!("a metrics table with columns {}", COLUMNS.join(",")),
    };
    // Messages quote the line as it is in the file.
    let lines: Vec<&str> = text.lines().collect();
    let raw = |line: u64| {
        let i = (line as usize).checked_sub(1);
        i.and_then(|i| lines.get(i)).copied().unwrap_or("")
    };
    // The line a record starts on (the reader's position is where it started looking:
    // before the empty lines it skipped).
    let first_line = |record: &csv::StringRecord| {
        let mut line = record.position().map_or(0, |p| p.line());
        while raw(line).is_empty() && (line as usize) < lines.len() {
            line += 1;
        }
        line
    };
    let mut records = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .into_records();
    let header = match records.next() {
        Some(Ok(h)) if first_line(&h) == 1 => h.iter().collect::<Vec<_>>().join(","),
        _ => String::new(),
    };
    let width = if header == COLUMNS.join(",") {
        COLUMNS.len()
    } else if let Some(&w) = OLD_COLUMNS
        .iter()
        .find(|&&w| header == COLUMNS[..w].join(","))
    {
        w
    } else {
        return Err(bad(1, format!("header `{}`", raw(1))));
    };
    let mut rows = Vec::new();
    for record in records {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            bad(line, e.to_string())
        })?;
        let line = first_line(&record);
        if raw(line).trim().is_empty() {
            continue;
        }
        let v: Vec<f64> = record
            .iter()
            .map(|c| c.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(line, format!("`{}` ({e})", raw(line))))?;
        if v.len() != width {
            return Err(bad(line, format!("{} cells", v.len())));
        }
        rows.push(EpochMetrics::from_values(&v));
    }
    Ok(rows)
}
