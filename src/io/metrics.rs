//! What a training run records per epoch, and its CSV form (metrics.csv), which the
//! figures are drawn from.

use crate::error::{io_error, LcsimError, Result};
use crate::io::csv_text::csv_text;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One row of metrics.csv. Quantities not measured in an epoch (test metrics between
/// evaluations, H for the gradient baselines, the diagnostics when they are off) are NaN.
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
    /// W^T (conv systems: their first feedback tensor, B2 or B1; NaN for other methods).
    pub feedback_angle_w: f64,
    /// LCP-KP: angle in degrees between G and D^T (NaN for other methods).
    pub feedback_angle_d: f64,
    /// Fraction of controlled solves that ended at a fold of the branch
    /// (`method.equilibrium = "branch"`; 0 for flow, NaN for the gradient baselines).
    pub fraction_folds: f64,
    /// Fraction of accelerated solves (free and controlled) whose equilibrium the flow
    /// certificate rejected (their fallback's result was used; NaN without solves to certify).
    pub fraction_uncertified: f64,
    /// Basin and stability diagnostics at the end of the epoch, on the fixed diagnostics batch.
    pub diagnostics: EpochDiagnostics,
    /// The unconverged solves by reason (None: not recorded, a row of a table written
    /// before these columns; NaN cells in metrics.csv).
    pub unconverged: Option<UnconvergedReasons>,
}

/// The solves of an epoch that did not converge, counted by why they stopped (metrics.csv's
/// `unconverged_*` columns). All but `free` count the update solves (controlled, adjoint or
/// imaml's conjugate-gradient solves: those of `fraction_unconverged`); a solve an
/// accelerated solver handed to its fallback counts by how the fallback ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnconvergedReasons {
    /// The state or the field became non-finite or passed `solver.divergence_bound`.
    pub diverged: usize,
    /// An integrator (Euler, the adaptive methods) reached `solver.max_steps`.
    pub max_steps: usize,
    /// A solver reached `solver.max_time` (an integrator's time, or an accelerated
    /// solver's iterations times its step).
    pub max_time: usize,
    /// An iteration limit: the accelerated solvers' `solver.max_iterations` (without a
    /// fallback), LCP-EBD's Adam steps (`ebd.steps`), imaml's `meta.cg_max_iterations`.
    pub max_iterations: usize,
    /// An accelerated solver's equilibrium the flow does not settle on (a Jacobian
    /// eigenvalue with positive real part).
    pub unstable: usize,
    /// Off the branch: the continuation stopped at a fold (`method.equilibrium =
    /// "branch"`), or the flow certificate rejected the equilibrium.
    pub off_branch: usize,
    /// Other: an accelerated solver stalled, or the integrator failed.
    pub other: usize,
    /// Free solves that did not converge (any reason; those of
    /// `fraction_free_unconverged`).
    pub free: usize,
}

impl UnconvergedReasons {
    /// The update solves' reasons, as named in the epoch line, with their counts.
    pub fn update_counts(&self) -> [(&'static str, usize); 7] {
        [
            ("diverged", self.diverged),
            ("max-steps", self.max_steps),
            ("max-time", self.max_time),
            ("max-iterations", self.max_iterations),
            ("unstable", self.unstable),
            ("off-branch", self.off_branch),
            ("other", self.other),
        ]
    }

    /// The non-zero counts, e.g. `diverged 2, max-iterations 18; free solves 3` (empty
    /// when every solve converged).
    pub fn summary(&self) -> String {
        let update: Vec<String> = self
            .update_counts()
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        let mut text = update.join(", ");
        if self.free > 0 {
            if !text.is_empty() {
                text.push_str("; ");
            }
            text.push_str(&format!("free solves {}", self.free));
        }
        text
    }

    fn values(&self) -> [usize; 8] {
        [
            self.diverged,
            self.max_steps,
            self.max_time,
            self.max_iterations,
            self.unstable,
            self.off_branch,
            self.other,
            self.free,
        ]
    }

    /// From the cells of metrics.csv; None when any is not a count (NaN: not recorded).
    fn from_values(v: &[f64]) -> Option<Self> {
        let count = |x: f64| (x.is_finite() && x >= 0.0).then_some(x as usize);
        let c: Vec<usize> = v.iter().map(|&x| count(x)).collect::<Option<_>>()?;
        let &[diverged, max_steps, max_time, max_iterations, unstable, off_branch, other, free] =
            &c[..]
        else {
            return None;
        };
        Some(UnconvergedReasons {
            diverged,
            max_steps,
            max_time,
            max_iterations,
            unstable,
            off_branch,
            other,
            free,
        })
    }
}

/// The basin and stability diagnostics of one epoch (spec 2.1, 2.2), measured at the end of
/// the epoch on a fixed batch (`training.diagnostics_samples`; see [`crate::train::diagnostics`]).
/// A quantity that could not be computed on any sample is NaN, never zero; the samples it
/// could not be computed on are counted in `diagnostics_failed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochDiagnostics {
    /// Fraction of the samples whose controlled equilibrium phi*, relaxed with the controller
    /// switched off (the free flow from phi*), does not return to phi0: the controlled state
    /// left phi0's basin (LCP methods; NaN for rbp / bp).
    pub fraction_basin_switch: f64,
    /// Fraction of the batch's free solves that converged.
    pub fraction_free_converged: f64,
    /// Largest real part of the spectrum of the free Jacobian `diag(1/tau) df/dphi` at phi0,
    /// max over the samples (negative: every free equilibrium is stable).
    pub free_spectral_abscissa: f64,
    /// `cosine(Delta theta, -grad_theta L(phi0))`: the method's update against the negative
    /// RBP gradient on the batch (LCP methods; NaN for rbp / bp).
    pub alignment_cosine: f64,
    /// Samples on which some diagnostic could not be computed (a solve that did not converge).
    pub diagnostics_failed: usize,
    /// Why, by reason and count (empty when none failed; not stored in metrics.csv).
    #[serde(default)]
    pub failure: String,
}

impl Default for EpochDiagnostics {
    /// Not measured: NaN everywhere, nothing failed.
    fn default() -> Self {
        EpochDiagnostics {
            fraction_basin_switch: f64::NAN,
            fraction_free_converged: f64::NAN,
            free_spectral_abscissa: f64::NAN,
            alignment_cosine: f64::NAN,
            diagnostics_failed: 0,
            failure: String::new(),
        }
    }
}

/// Column names of metrics.csv, in order (tables written before the feedback columns
/// existed have the first 13, those before the fold and certificate columns the first 15,
/// those before the diagnostics the first 17, those before the unconverged reasons the
/// first 22; all are read with NaN in the missing columns, 0 failed diagnostics and no
/// unconverged reasons).
pub const COLUMNS: [&str; 30] = [
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
    "fraction_basin_switch",
    "fraction_free_converged",
    "free_spectral_abscissa",
    "alignment_cosine",
    "diagnostics_failed",
    "unconverged_diverged",
    "unconverged_max_steps",
    "unconverged_max_time",
    "unconverged_max_iterations",
    "unconverged_unstable",
    "unconverged_off_branch",
    "unconverged_other",
    "unconverged_free",
];

/// Widths of the older tables the reader accepts: before the feedback angles, before the
/// folds and certificates, before the diagnostics, and before the unconverged reasons.
const OLD_WIDTHS: [usize; 4] = [13, 15, 17, 22];

/// The first column of the unconverged reasons.
const REASONS_AT: usize = 22;

impl EpochMetrics {
    fn values(&self) -> [f64; 30] {
        let d = &self.diagnostics;
        let reasons = self
            .unconverged
            .map_or([f64::NAN; 8], |u| u.values().map(|n| n as f64));
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
            d.fraction_basin_switch,
            d.fraction_free_converged,
            d.free_spectral_abscissa,
            d.alignment_cosine,
            d.diagnostics_failed as f64,
            reasons[0],
            reasons[1],
            reasons[2],
            reasons[3],
            reasons[4],
            reasons[5],
            reasons[6],
            reasons[7],
        ]
    }

    fn from_values(v: &[f64]) -> Self {
        let at = |i: usize| v.get(i).copied().unwrap_or(f64::NAN);
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
            feedback_angle_w: at(13),
            feedback_angle_d: at(14),
            fraction_folds: at(15),
            fraction_uncertified: at(16),
            diagnostics: EpochDiagnostics {
                fraction_basin_switch: at(17),
                fraction_free_converged: at(18),
                free_spectral_abscissa: at(19),
                alignment_cosine: at(20),
                diagnostics_failed: v.get(21).map_or(0, |&n| n as usize),
                failure: String::new(),
            },
            unconverged: v
                .get(REASONS_AT..)
                .and_then(UnconvergedReasons::from_values),
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

/// Parses metrics.csv as written by [`to_csv`] (also the 13, 15, 17 and 22 columns of older tables;
/// blank lines are skipped, cells may be padded with spaces).
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
    let width = match std::iter::once(COLUMNS.len())
        .chain(OLD_WIDTHS)
        .find(|&w| header == COLUMNS[..w].join(","))
    {
        Some(w) => w,
        None => return Err(bad(1, format!("header `{}`", raw(1)))),
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
