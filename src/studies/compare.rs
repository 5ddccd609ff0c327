//! `lcsim compare`: the least-control principle across runs. The mean control magnitude H
//! and the test loss over training, one panel per run folder (from its metrics.csv), a
//! table of both relative to their first finite value (h_and_test_loss.csv) and compare.json.

use crate::config::Config;
use crate::error::{invalid, Result};
use crate::io::csv_text::csv_text;
use crate::io::figure_format::FigureFormat;
use crate::io::metrics::{read_csv, EpochMetrics};
use crate::plot::control_magnitude_panels;
use crate::run::{create_out_dir, write_atomic, write_json, RunDir};
use serde::Serialize;
use std::path::PathBuf;

/// The comparison as asked for.
#[derive(Clone, Debug)]
pub struct CompareJob {
    /// Run folders made by `lcsim train`, one panel each, in this order.
    pub run_dirs: Vec<PathBuf>,
    /// Output folder (created if needed; its files are replaced).
    pub out: PathBuf,
    pub format: FigureFormat,
    /// Figure title (default: the data source and network of the first run).
    pub title: Option<String>,
    /// The command line, recorded in compare.json.
    pub command: String,
}

/// One run's first and last finite H and test loss.
#[derive(Clone, Debug)]
pub struct CompareRow {
    /// The run folder's name.
    pub name: String,
    pub method: &'static str,
    pub epochs: usize,
    pub h_first: f64,
    pub h_last: f64,
    pub loss_first: f64,
    pub loss_last: f64,
    pub accuracy_last: f64,
}

/// What [`compare`] wrote, with the table it prints ([`std::fmt::Display`]).
#[derive(Clone, Debug)]
pub struct Comparison {
    pub rows: Vec<CompareRow>,
    pub csv: PathBuf,
    pub json: PathBuf,
    pub figure: PathBuf,
}

/// A line of h_and_test_loss.csv; numbers as Rust prints them (`{}`), as before the csv
/// crate wrote the table.
#[derive(Serialize)]
struct CsvRow<'a> {
    run: &'a str,
    method: &'a str,
    epoch: usize,
    mean_h: String,
    test_loss: String,
    train_loss: String,
    test_accuracy: String,
    h_over_first: String,
    test_loss_over_first: String,
}

const CSV_HEADER: [&str; 9] = [
    "run",
    "method",
    "epoch",
    "mean_h",
    "test_loss",
    "train_loss",
    "test_accuracy",
    "h_over_first",
    "test_loss_over_first",
];

/// The first finite value of a metric over the epochs (NaN when none is).
fn first_finite(rows: &[EpochMetrics], f: fn(&EpochMetrics) -> f64) -> f64 {
    rows.iter()
        .map(f)
        .find(|v| v.is_finite())
        .unwrap_or(f64::NAN)
}

/// The last finite value of a metric over the epochs (NaN when none is).
fn last_finite(rows: &[EpochMetrics], f: fn(&EpochMetrics) -> f64) -> f64 {
    rows.iter()
        .rev()
        .map(f)
        .find(|v| v.is_finite())
        .unwrap_or(f64::NAN)
}

/// A least-control run with its config, name and metrics.
struct ComparedRun {
    run: RunDir,
    config: Config,
    name: String,
    rows: Vec<EpochMetrics>,
}

/// Reads and checks every run, then draws the panels and writes the table and compare.json.
pub fn compare(job: &CompareJob) -> Result<Comparison> {
    // Read and check every run before writing anything.
    let mut runs = Vec::new();
    for dir in &job.run_dirs {
        let metrics = dir.join("metrics.csv");
        if !metrics.is_file() {
            return Err(invalid(
                "RUN_DIR",
                format!("{} (no metrics.csv there)", dir.display()),
                "a run folder made by `lcsim train` with at least one completed epoch",
            ));
        }
        let (run, config) = RunDir::open(dir)?;
        let rows = read_csv(&metrics)?;
        if rows.is_empty() || !rows.iter().any(|r| r.mean_h.is_finite()) {
            return Err(invalid(
                "RUN_DIR",
                format!(
                    "{} (method {}, {} epochs, no finite mean_h)",
                    dir.display(),
                    config.method.name.name(),
                    rows.len()
                ),
                "a least-control run (lcp-di, lcp-kp, lcp-lf, lcp-ebd) with at least one completed epoch",
            ));
        }
        let name = run
            .path
            .file_name()
            .map_or_else(|| config.run_name(), |n| n.to_string_lossy().into_owned());
        runs.push(ComparedRun {
            run,
            config,
            name,
            rows,
        });
    }
    create_out_dir("--out", &job.out)?;
    let panels: Vec<(String, Vec<EpochMetrics>)> = runs
        .iter()
        .map(|r| {
            let method = r.config.method.name.name();
            let caption = if r.name == method {
                method.to_uppercase()
            } else {
                format!("{} ({})", method.to_uppercase(), r.name)
            };
            (caption, r.rows.clone())
        })
        .collect();
    let first = &runs[0].config;
    let title = job.title.clone().unwrap_or_else(|| {
        format!(
            "Control magnitude H and test loss over training ({}, {} {:?})",
            first.data.source.name(),
            format!("{:?}", first.model.kind).to_uppercase(),
            first.model.hidden
        )
    });
    let figure = job
        .out
        .join(format!("h_and_test_loss.{}", job.format.extension()));
    control_magnitude_panels(&panels, &title, &figure, job.format)?;
    let mut csv_rows = Vec::new();
    let mut table = Vec::new();
    let mut rows = Vec::new();
    for r in &runs {
        let method = r.config.method.name.name();
        let (h0, l0) = (
            first_finite(&r.rows, |m| m.mean_h),
            first_finite(&r.rows, |m| m.test_loss),
        );
        for m in &r.rows {
            csv_rows.push(CsvRow {
                run: &r.name,
                method,
                epoch: m.epoch,
                mean_h: m.mean_h.to_string(),
                test_loss: m.test_loss.to_string(),
                train_loss: m.train_loss.to_string(),
                test_accuracy: m.test_accuracy.to_string(),
                h_over_first: (m.mean_h / h0).to_string(),
                test_loss_over_first: (m.test_loss / l0).to_string(),
            });
        }
        let row = CompareRow {
            name: r.name.clone(),
            method,
            epochs: r.rows.len(),
            h_first: h0,
            h_last: last_finite(&r.rows, |m| m.mean_h),
            loss_first: l0,
            loss_last: last_finite(&r.rows, |m| m.test_loss),
            accuracy_last: last_finite(&r.rows, |m| m.test_accuracy),
        };
        table.push(serde_json::json!({
            "dir": r.run.path.display().to_string(),
            "method": method,
            "epochs": row.epochs,
            "model_seed": r.config.model.seed,
            "training_seed": r.config.training.seed,
            "mean_h_first": row.h_first,
            "mean_h_last": row.h_last,
            "test_loss_first": row.loss_first,
            "test_loss_last": row.loss_last,
            "test_accuracy_last": row.accuracy_last,
        }));
        rows.push(row);
    }
    let csv_path = job.out.join("h_and_test_loss.csv");
    write_atomic(&csv_path, csv_text(CSV_HEADER, csv_rows).as_bytes())?;
    let json = job.out.join("compare.json");
    write_json(
        &json,
        &serde_json::json!({
            "lcsim_version": env!("CARGO_PKG_VERSION"),
            "command": job.command,
            "runs": table,
            "figure": figure.display().to_string(),
            "csv": csv_path.display().to_string(),
        }),
    )?;
    Ok(Comparison {
        rows,
        csv: csv_path,
        json,
        figure,
    })
}

/// The table of first and last values per run and the files written.
impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<28} {:<8} {:>6} {:>11} {:>11} {:>9} {:>10} {:>10} {:>8}",
            "run",
            "method",
            "epochs",
            "H first",
            "H last",
            "H ratio",
            "loss first",
            "loss last",
            "acc last"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<28} {:<8} {:>6} {:>11.3e} {:>11.3e} {:>9.3} {:>10.4} {:>10.4} {:>8.4}",
                r.name,
                r.method,
                r.epochs,
                r.h_first,
                r.h_last,
                r.h_last / r.h_first,
                r.loss_first,
                r.loss_last,
                r.accuracy_last
            )?;
        }
        writeln!(f, "table:    {}", self.csv.display())?;
        writeln!(f, "settings: {}", self.json.display())?;
        writeln!(f, "figure:   {}", self.figure.display())
    }
}
