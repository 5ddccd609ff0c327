//! Collecting a sweep: the final numbers of every run (from its summary.json and
//! metrics.csv) and results.csv, one row per run.

use super::folder::{read_summary, RunStatus, Sweep};
use super::labels::display_value;
use super::plan::RunEntry;
use crate::io::csv_text::csv_text;
use crate::io::metrics::{read_csv, EpochMetrics};
use std::collections::BTreeMap;

/// The final numbers of one run (NaN when absent).
#[derive(Clone, Debug)]
pub struct RunResult {
    pub run: RunEntry,
    pub status: RunStatus,
    pub epochs: usize,
    pub values: BTreeMap<&'static str, f64>,
}

/// Result columns of results.csv, after the run id, status and swept keys.
pub const RESULT_COLUMNS: [&str; 12] = [
    "final_test_accuracy",
    "final_test_loss",
    "final_train_accuracy",
    "final_train_loss",
    "final_mean_h",
    "final_fraction_unconverged",
    "mean_fraction_unconverged",
    "fraction_converged",
    "mean_fraction_free_unconverged",
    "mean_steps",
    "max_steps",
    "total_wall_time_s",
];

/// Reads every run's summary.json and metrics.csv.
pub fn collect(sweep: &Sweep) -> Vec<RunResult> {
    sweep
        .manifest
        .runs
        .iter()
        .map(|run| {
            let status = sweep.status(run);
            let dir = sweep.run_dir(run);
            let rows: Vec<EpochMetrics> = read_csv(&dir.join("metrics.csv")).unwrap_or_default();
            let summary = read_summary(&dir);
            let mut values: BTreeMap<&'static str, f64> =
                RESULT_COLUMNS.iter().map(|c| (*c, f64::NAN)).collect();
            let last = rows.last();
            let mean = |f: fn(&EpochMetrics) -> f64| {
                if rows.is_empty() {
                    f64::NAN
                } else {
                    rows.iter().map(f).sum::<f64>() / rows.len() as f64
                }
            };
            let from_summary = |k: &str| {
                summary
                    .as_ref()
                    .and_then(|s| s.get(k))
                    .and_then(|v| v.as_f64())
            };
            let mut put = |k: &'static str, v: f64| {
                values.insert(k, v);
            };
            let l = |f: fn(&EpochMetrics) -> f64| last.map_or(f64::NAN, f);
            put(
                "final_test_accuracy",
                from_summary("final_test_accuracy").unwrap_or(l(|m| m.test_accuracy)),
            );
            put(
                "final_test_loss",
                from_summary("final_test_loss").unwrap_or(l(|m| m.test_loss)),
            );
            put(
                "final_mean_h",
                from_summary("final_mean_h").unwrap_or(l(|m| m.mean_h)),
            );
            put("final_train_accuracy", l(|m| m.train_accuracy));
            put("final_train_loss", l(|m| m.train_loss));
            put("final_fraction_unconverged", l(|m| m.fraction_unconverged));
            let unconverged = mean(|m| m.fraction_unconverged);
            put("mean_fraction_unconverged", unconverged);
            put("fraction_converged", 1.0 - unconverged);
            put(
                "mean_fraction_free_unconverged",
                mean(|m| m.fraction_free_unconverged),
            );
            put("mean_steps", mean(|m| m.mean_steps));
            put(
                "max_steps",
                rows.iter().map(|m| m.max_steps).fold(f64::NAN, f64::max),
            );
            put(
                "total_wall_time_s",
                from_summary("total_wall_time_s")
                    .unwrap_or_else(|| rows.iter().map(|m| m.wall_time_s).sum()),
            );
            RunResult {
                run: run.clone(),
                status,
                epochs: rows.len(),
                values,
            }
        })
        .collect()
}

/// The text of results.csv: run_id, index, status, the swept keys, epochs, the
/// [`RESULT_COLUMNS`] and the error of failed runs. Unfinished and missing runs are rows too.
/// Numbers in Rust's `{}` form (`1e-7` as `0.0000001`), NaN and infinities as empty cells;
/// cells holding a comma, a quote, CR or LF are quoted ([`csv_text`]).
pub fn results_csv(sweep: &Sweep, results: &[RunResult]) -> String {
    let mut header = vec!["run_id", "index", "status"];
    header.extend(sweep.manifest.keys.iter().map(String::as_str));
    header.push("epochs");
    header.extend(RESULT_COLUMNS);
    header.push("error");
    let rows = results.iter().map(|r| {
        let mut cells = vec![
            r.run.id.clone(),
            r.run.index.to_string(),
            r.status.name().into(),
        ];
        for k in &sweep.manifest.keys {
            cells.push(display_value(&r.run.overrides[k]));
        }
        cells.push(r.epochs.to_string());
        for c in RESULT_COLUMNS {
            let v = r.values[c];
            cells.push(if v.is_finite() {
                format!("{v}")
            } else {
                String::new()
            });
        }
        cells.push(match &r.status {
            RunStatus::Failed(reason) => reason.clone(),
            _ => String::new(),
        });
        cells
    });
    csv_text(header, rows)
}
