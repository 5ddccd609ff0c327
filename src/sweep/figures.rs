//! collect's figures: each metric against the x key (one line per value of the y key) and,
//! with two or more varied keys, a heatmap over (x, y); random samples as one point per run.

use super::folder::{RunStatus, Sweep};
use super::labels::{display_value, key_label, key_symbol, metric_label, numeric_value};
use super::results::{RunResult, RESULT_COLUMNS};
use crate::error::{invalid, io_error, Result};
use crate::plot::YScale;
use std::path::PathBuf;

/// Keys whose values vary among the runs, in manifest order.
fn varied_keys(sweep: &Sweep) -> Vec<String> {
    sweep
        .manifest
        .keys
        .iter()
        .filter(|k| {
            let first = &sweep.manifest.runs[0].overrides[*k];
            sweep
                .manifest
                .runs
                .iter()
                .any(|r| &r.overrides[*k] != first)
        })
        .cloned()
        .collect()
}

/// Distinct values of a key, numerically sorted when all are numbers.
fn distinct_values(sweep: &Sweep, key: &str) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    for r in &sweep.manifest.runs {
        let v = &r.overrides[key];
        if !values.contains(v) {
            values.push(v.clone());
        }
    }
    if values.iter().all(|v| numeric_value(v).is_some()) {
        values.sort_by(|a, b| {
            numeric_value(a)
                .unwrap()
                .total_cmp(&numeric_value(b).unwrap())
        });
    }
    values
}

/// Whether numeric axis values read best on a log axis: all positive and spanning at least
/// two decades, or at least three values in a constant ratio (1, 2, 4, 8).
pub fn log_axis(values: &[f64]) -> bool {
    if values.is_empty() || values.iter().any(|&v| v.is_nan() || v <= 0.0) {
        return false;
    }
    let (lo, hi) = values
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if hi / lo >= 100.0 {
        return true;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v.len() >= 3 && {
        let r = v[1] / v[0];
        r > 1.5 && v.windows(2).all(|w| ((w[1] / w[0]) / r - 1.0).abs() < 1e-6)
    }
}

/// What `collect` draws.
#[derive(Clone, Debug)]
pub struct FigureSettings {
    /// Result columns to draw (see [`RESULT_COLUMNS`]).
    pub metrics: Vec<String>,
    /// x key of the figures (default: the first varied key).
    pub x: Option<String>,
    /// y key of the heatmaps / line colour (default: the second varied key).
    pub y: Option<String>,
    pub format: crate::plot::FigureFormat,
    /// Start of the figure titles (default: the sweep folder's name).
    pub title: Option<String>,
}

impl Default for FigureSettings {
    fn default() -> Self {
        FigureSettings {
            metrics: vec!["final_test_accuracy".into(), "fraction_converged".into()],
            x: None,
            y: None,
            format: crate::plot::FigureFormat::Png,
            title: None,
        }
    }
}

/// Checks the figure settings against the sweep before anything is written.
pub fn check_figure_settings(sweep: &Sweep, s: &FigureSettings) -> Result<()> {
    for m in &s.metrics {
        if !RESULT_COLUMNS.contains(&m.as_str()) {
            return Err(invalid(
                "--metric",
                m,
                &format!("one of {RESULT_COLUMNS:?}"),
            ));
        }
    }
    let varied = varied_keys(sweep);
    for (flag, key) in [("--x", &s.x), ("--y", &s.y)] {
        if let Some(k) = key {
            if !varied.contains(k) {
                return Err(invalid(
                    flag,
                    k,
                    &format!("a swept key with more than one value, one of {varied:?}"),
                ));
            }
        }
    }
    if s.x.is_some() && s.x == s.y {
        return Err(invalid(
            "--y",
            s.y.as_deref().unwrap_or(""),
            "a key other than --x",
        ));
    }
    Ok(())
}

/// How a metric reads best: fractions on 0..1, positive values spanning a decade or more
/// (steps, H, times) on a log scale, the rest linearly.
fn y_scale(metric: &str, values: &[f64]) -> YScale {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = finite
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if metric.contains("fraction") {
        YScale::Unit
    } else if !finite.is_empty() && lo > 0.0 && hi >= 10.0 * lo {
        YScale::Log
    } else {
        YScale::Linear
    }
}

/// Mean of the finite values.
fn mean_finite(values: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = values
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

/// Draws the figures into DIR/figures and returns their paths: for each metric, the metric
/// against the x key (lines, one per value of the y key; a log x axis where the values
/// call for it) and, with two or more varied keys, a heatmap over (x, y). Only done runs
/// count; cells and points without any are left empty (n/a). Other varied keys are averaged
/// over (said in the title).
pub fn draw_figures(
    sweep: &Sweep,
    results: &[RunResult],
    s: &FigureSettings,
) -> Result<Vec<PathBuf>> {
    use crate::plot::{heatmap, parameter_lines, Heatmap, Series};
    check_figure_settings(sweep, s)?;
    let varied = varied_keys(sweep);
    let Some(x_key) = s.x.clone().or_else(|| varied.first().cloned()) else {
        return Ok(vec![]);
    };
    let y_key =
        s.y.clone()
            .or_else(|| varied.iter().find(|k| **k != x_key).cloned());
    let others: Vec<&String> = varied
        .iter()
        .filter(|k| **k != x_key && Some(*k) != y_key.as_ref())
        .collect();
    let dir = sweep.dir.join("figures");
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let name = s.title.clone().unwrap_or_else(|| {
        sweep
            .dir
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned())
    });
    let done: Vec<&RunResult> = results
        .iter()
        .filter(|r| r.status == RunStatus::Done)
        .collect();
    let n_done = done.len();
    let title_for = |extra: &str| {
        let mut t = format!("{name}: {n_done} of {} runs done", results.len());
        if !others.is_empty() {
            let o: Vec<&str> = others.iter().map(|k| k.as_str()).collect();
            t.push_str(&format!(", mean over {}", o.join(", ")));
        }
        t.push_str(extra);
        t
    };
    let ext = s.format.extension();
    let short = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    let xs = distinct_values(sweep, &x_key);
    let x_numeric: Option<Vec<f64>> = xs.iter().map(|v| numeric_value(v)).collect();
    let ys: Vec<Option<String>> = match &y_key {
        Some(k) => distinct_values(sweep, k).into_iter().map(Some).collect(),
        None => vec![None],
    };
    // Random samples: every run is its own point (no grid to average on), against each
    // numeric key (or only --x).
    let mut written = Vec::new();
    if !sweep.manifest.ranges.is_empty() {
        let keys: Vec<&String> = match &s.x {
            Some(k) => vec![k],
            None => varied.iter().collect(),
        };
        for metric in &s.metrics {
            for key in &keys {
                let pts: Vec<(f64, f64)> = done
                    .iter()
                    .filter_map(|r| {
                        Some((
                            numeric_value(&r.run.overrides[key.as_str()])?,
                            r.values[metric.as_str()],
                        ))
                    })
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                let (px, py): (Vec<f64>, Vec<f64>) = pts.into_iter().unzip();
                let path = dir.join(format!("{metric}-vs-{}.{ext}", short(key)));
                let title = format!(
                    "{name}: {n_done} of {} runs done, one point per run",
                    results.len()
                );
                let scale = y_scale(metric, &py);
                parameter_lines(
                    &[(px.clone(), Series::new("runs", py))],
                    &key_label(key),
                    &metric_label(metric),
                    log_axis(&px),
                    scale,
                    false,
                    &title,
                    &path,
                    s.format,
                )?;
                written.push(path);
            }
        }
        return Ok(written);
    }
    for metric in &s.metrics {
        let cell = |x: &str, y: Option<&String>| {
            mean_finite(
                done.iter()
                    .filter(|r| r.run.overrides[&x_key] == x)
                    .filter(|r| match (y, &y_key) {
                        (Some(y), Some(k)) => &r.run.overrides[k] == y,
                        _ => true,
                    })
                    .map(|r| r.values[metric.as_str()]),
            )
        };
        let unit = metric.contains("fraction");
        if let Some(xv) = &x_numeric {
            let log_x = log_axis(xv);
            let series: Vec<(Vec<f64>, Series)> = ys
                .iter()
                .map(|y| {
                    let label = match (y, &y_key) {
                        (Some(y), Some(k)) => format!("{} = {}", key_symbol(k), display_value(y)),
                        _ => metric_label(metric),
                    };
                    let values = xs.iter().map(|x| cell(x, y.as_ref())).collect();
                    (xv.clone(), Series::new(label, values))
                })
                .collect();
            let path = dir.join(format!("{metric}-vs-{}.{ext}", short(&x_key)));
            let all: Vec<f64> = series.iter().flat_map(|(_, s)| s.values.clone()).collect();
            parameter_lines(
                &series,
                &key_label(&x_key),
                &metric_label(metric),
                log_x,
                y_scale(metric, &all),
                true,
                &title_for(""),
                &path,
                s.format,
            )?;
            written.push(path);
        }
        if let Some(yk) = &y_key {
            let values: Vec<Vec<f64>> = ys
                .iter()
                .map(|y| xs.iter().map(|x| cell(x, y.as_ref())).collect())
                .collect();
            // Why a cell is empty: its runs failed, or have not finished.
            let notes: Vec<Vec<String>> = ys
                .iter()
                .map(|y| {
                    xs.iter()
                        .map(|x| {
                            let at: Vec<&RunResult> = results
                                .iter()
                                .filter(|r| &r.run.overrides[&x_key] == x)
                                .filter(|r| y.as_ref().is_none_or(|y| &r.run.overrides[yk] == y))
                                .collect();
                            if at.iter().any(|r| r.status == RunStatus::Done) {
                                String::new()
                            } else if at.iter().any(|r| matches!(r.status, RunStatus::Failed(_))) {
                                "failed".into()
                            } else {
                                "not run".into()
                            }
                        })
                        .collect()
                })
                .collect();
            // Counts and magnitudes spanning a decade or more read best on a log scale.
            let finite: Vec<f64> = values
                .iter()
                .flatten()
                .copied()
                .filter(|v| v.is_finite())
                .collect();
            let log = y_scale(metric, &finite) == YScale::Log;
            let h = Heatmap {
                title: title_for(""),
                x_label: key_label(&x_key),
                y_label: key_label(yk),
                x_ticks: xs.iter().map(|v| display_value(v)).collect(),
                y_ticks: ys
                    .iter()
                    .map(|v| display_value(v.as_deref().unwrap_or("")))
                    .collect(),
                values,
                notes,
                value_label: metric_label(metric),
                range: unit.then_some((0.0, 1.0)),
                log,
            };
            let path = dir.join(format!("{metric}-{}-{}.{ext}", short(&x_key), short(yk)));
            heatmap(&h, &path, s.format)?;
            written.push(path);
        }
    }
    Ok(written)
}
