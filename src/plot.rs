//! Figures for papers: learning curves, the control magnitude H = 1/2 |psi*|^2, solver
//! statistics (all drawn from the per-epoch [`EpochMetrics`] of metrics.csv) and stacked
//! time courses of one simulation (neuron trajectories, control magnitudes, loss).
//!
//! Every figure is written as PNG (bitmap) or SVG ([`FigureFormat`]) with a white background,
//! text sized to stay readable when the figure is shrunk to a column of a paper (axis labels
//! 28 px, tick labels and legends 22 px), 3 px lines and the colour-blind safe Okabe-Ito
//! palette. Text is rendered with DejaVu Sans, which is compiled into the library
//! (`assets/DejaVuSans.ttf`, Bitstream Vera licence in `assets/DejaVu-LICENSE.txt`), so no
//! system fonts are needed. SVG files ask for "DejaVu Sans" with `sans-serif` as fallback.
//!
//! Missing values are expected: NaN (and infinite) points are skipped, a series without any
//! finite value is left out (also from the legend), and degenerate ranges (one epoch, constant
//! values) are padded so the axes stay meaningful. Files are written atomically: the figure is
//! rendered to a temporary file in the target directory and renamed onto `path`, so a reader
//! never sees a half-written figure and a failed call leaves no file behind. The file name is
//! used as given (see [`FigureFormat::extension`] for the conventional extension).

use crate::error::{invalid, LcsimError, Result};
use crate::io::metrics::EpochMetrics;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle, FontTransform};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// File format of a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum FigureFormat {
    /// Portable Network Graphics (RGB bitmap).
    Png,
    /// Scalable Vector Graphics (text kept as text).
    Svg,
}

impl FigureFormat {
    /// The conventional file extension, without the dot: `"png"` or `"svg"`.
    pub fn extension(self) -> &'static str {
        match self {
            FigureFormat::Png => "png",
            FigureFormat::Svg => "svg",
        }
    }
}

/// Size in pixels (width, height) of the two-panel figures [`learning_curves`] and
/// [`solver_statistics`].
pub const TWO_PANEL_SIZE: (u32, u32) = (1600, 900);

/// Size in pixels (width, height) of the single-panel figure [`control_magnitude`].
pub const ONE_PANEL_SIZE: (u32, u32) = (1200, 800);

/// Width of the figure written by [`trajectories`].
const TRAJECTORY_WIDTH: u32 = 1600;
/// Height of one stacked panel of [`trajectories`] (caption and plot).
const TRAJECTORY_PANEL_HEIGHT: u32 = 330;
/// Height of the shared time axis (tick labels and axis label) below the last panel.
const X_AXIS_HEIGHT: u32 = 90;
/// Height of the figure title band.
const TITLE_HEIGHT: u32 = 64;

/// Size in pixels (width, height) of the figure written by [`trajectories`] with
/// `n_panels` stacked panels and a title (an empty title saves its band of
/// 64 px at the top).
pub fn trajectories_size(n_panels: usize, has_title: bool) -> (u32, u32) {
    let n = n_panels.clamp(1, 64) as u32;
    let title = if has_title { TITLE_HEIGHT } else { 0 };
    (
        TRAJECTORY_WIDTH,
        title + n * TRAJECTORY_PANEL_HEIGHT + X_AXIS_HEIGHT + 10,
    )
}

/// One labelled curve of a [`trajectories`] panel: `values[k]` belongs to `times[k]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// One value per time point; NaN or infinite values are skipped.
    pub values: Vec<f64>,
}

impl Series {
    /// A series with the given legend text and values.
    pub fn new(label: impl Into<String>, values: Vec<f64>) -> Self {
        Series {
            label: label.into(),
            values,
        }
    }
}

/// One panel of [`trajectories`]: (caption, y-axis label, series).
pub type TrajectoryPanel = (String, String, Vec<Series>);

/// Axis label of the epoch axes.
pub const EPOCH_LABEL: &str = "epoch";
/// Axis label of the loss axes.
pub const LOSS_LABEL: &str = "cross-entropy loss";
/// Axis label of the accuracy axis.
pub const ACCURACY_LABEL: &str = "accuracy";
/// Axis label of the control magnitude axis.
pub const H_LABEL: &str = "mean control magnitude H = ½|ψ*|²";
/// Axis label of the solver step axis.
pub const STEPS_LABEL: &str = "solver steps per solve";
/// Axis label of the non-convergence axis.
pub const UNCONVERGED_LABEL: &str = "fraction of solves unconverged";
/// Axis label of the shared time axis of [`trajectories`].
pub const TIME_LABEL: &str = "time (units of τᵥ)";

/// Two panels side by side, x = epoch: the mean cross-entropy loss (left) and the accuracy
/// (right), each for the training batches (line) and the test split (line with a marker at
/// every evaluated epoch; epochs without evaluation, NaN, are skipped). Written with size
/// [`TWO_PANEL_SIZE`].
///
/// Errors: `rows` empty ([`LcsimError::InvalidValue`]); the file cannot be written
/// ([`LcsimError::Io`] naming `path`).
pub fn learning_curves(
    rows: &[EpochMetrics],
    title: &str,
    path: &Path,
    format: FigureFormat,
) -> Result<()> {
    let rows = sorted_rows(rows, "rows")?;
    let epochs: Vec<f64> = rows.iter().map(|r| r.epoch as f64).collect();
    let x = Axis::epochs(&epochs);
    let col = |f: fn(&EpochMetrics) -> f64| rows.iter().map(f).collect::<Vec<f64>>();

    let loss_lines = vec![
        Line::new("train", OKABE_ITO[0], &epochs, &col(|r| r.train_loss)),
        Line::new("test", OKABE_ITO[1], &epochs, &col(|r| r.test_loss)).markers(),
    ];
    let acc_lines = vec![
        Line::new("train", OKABE_ITO[0], &epochs, &col(|r| r.train_accuracy)),
        Line::new("test", OKABE_ITO[1], &epochs, &col(|r| r.test_accuracy)).markers(),
    ];
    let panels = vec![
        Panel::new(x.clone(), EPOCH_LABEL, LOSS_LABEL, loss_lines, None),
        Panel::new(x, EPOCH_LABEL, ACCURACY_LABEL, acc_lines, None),
    ];
    let fig = Figure {
        size: TWO_PANEL_SIZE,
        title: title.to_string(),
        panels,
        layout: Layout::Row,
        marker: None,
    };
    render(&fig, path, format)
}

/// The least-control principle's signature: the mean control magnitude
/// H = 1/2 |psi*|^2 per sample and epoch (left axis, logarithmic when all measured H are
/// positive) falls as learning succeeds; the test loss at the evaluated epochs is drawn on
/// the right axis for comparison (the training loss if the test split was never evaluated,
/// nothing if neither was measured). Written with size [`ONE_PANEL_SIZE`].
///
/// Returns `Ok(false)` and writes nothing when no epoch has a finite H (gradient
/// baselines record NaN), `Ok(true)` when the figure was written.
///
/// Errors: the file cannot be written ([`LcsimError::Io`] naming `path`).
pub fn control_magnitude(
    rows: &[EpochMetrics],
    title: &str,
    path: &Path,
    format: FigureFormat,
) -> Result<bool> {
    if !rows.iter().any(|r| r.mean_h.is_finite()) {
        return Ok(false);
    }
    let rows = sorted_rows(rows, "rows")?;
    let panel = h_and_loss_panel(&rows, all_h_positive(&rows), None);
    render_one_panel(panel, title, path, format)?;
    Ok(true)
}

/// A figure of one panel, size [`ONE_PANEL_SIZE`].
fn render_one_panel(panel: Panel, title: &str, path: &Path, format: FigureFormat) -> Result<()> {
    let fig = Figure {
        size: ONE_PANEL_SIZE,
        title: title.to_string(),
        panels: vec![panel],
        layout: Layout::Row,
        marker: None,
    };
    render(&fig, path, format)
}

/// True when every finite H of `rows` is positive (H can then go on a log axis).
fn all_h_positive(rows: &[EpochMetrics]) -> bool {
    rows.iter()
        .map(|r| r.mean_h)
        .filter(|v| v.is_finite())
        .all(|v| v > 0.0)
}

/// The panel of [`control_magnitude`] for rows sorted by epoch: mean H on the left axis
/// (log10 when `log`), the test loss (the training loss if the test split was never
/// evaluated) dashed with markers on the right axis.
fn h_and_loss_panel(rows: &[EpochMetrics], log: bool, caption: Option<String>) -> Panel {
    let epochs: Vec<f64> = rows.iter().map(|r| r.epoch as f64).collect();
    let h: Vec<f64> = rows.iter().map(|r| r.mean_h).collect();
    let mut h_line = if log {
        let logs: Vec<f64> = h.iter().map(|&v| v.log10()).collect();
        Line::new("mean H (left axis)", OKABE_ITO[0], &epochs, &logs)
    } else {
        Line::new("mean H (left axis)", OKABE_ITO[0], &epochs, &h)
    };
    h_line.square = true;
    let y = if log {
        Axis::log10(&h_line.points.iter().map(|p| p.1).collect::<Vec<_>>())
    } else {
        Axis::linear(&h, 6)
    };
    let mut lines = vec![h_line];
    let test: Vec<f64> = rows.iter().map(|r| r.test_loss).collect();
    let train: Vec<f64> = rows.iter().map(|r| r.train_loss).collect();
    let (loss, loss_name) = if test.iter().any(|v| v.is_finite()) {
        (test, "test")
    } else {
        (train, "train")
    };
    let mut panel = Panel::new(Axis::epochs(&epochs), EPOCH_LABEL, H_LABEL, vec![], caption);
    if loss.iter().any(|v| v.is_finite()) {
        panel.y2 = Some(Axis::linear(&loss, 6));
        panel.y2_desc = format!("{loss_name} {LOSS_LABEL}");
        let mut l = Line::new(
            &format!("{loss_name} loss (right axis)"),
            OKABE_ITO[1],
            &epochs,
            &loss,
        )
        .markers();
        l.dashed = true;
        l.right = true;
        lines.push(l);
    }
    panel.y = y;
    panel.lines = lines;
    panel
}

/// Size in pixels (width, height) of one panel of [`control_magnitude_panels`]; the figure
/// is a grid of two columns of them plus the title band.
pub const GRID_PANEL_SIZE: (u32, u32) = (1000, 640);

/// The least-control principle across runs: one panel of [`control_magnitude`] per run
/// `(caption, rows)` (mean H on a log left axis, test loss on the right axis), in a grid of
/// two columns (one for a single run). Every panel has the same epoch, H and loss axes, so the
/// runs compare at a glance. Written with size `(columns * 1000, rows * 640 + 64)` px.
///
/// Errors: no runs, a run without epochs or without any finite H (gradient baselines), or
/// more than 16 runs ([`LcsimError::InvalidValue`] naming the run); the file cannot be
/// written ([`LcsimError::Io`] naming `path`).
pub fn control_magnitude_panels(
    runs: &[(String, Vec<EpochMetrics>)],
    title: &str,
    path: &Path,
    format: FigureFormat,
) -> Result<()> {
    if runs.is_empty() || runs.len() > 16 {
        return Err(invalid("runs", runs.len(), "1 to 16 runs"));
    }
    let mut sorted = Vec::with_capacity(runs.len());
    for (caption, rows) in runs {
        let rows = sorted_rows(rows, caption)?;
        if !rows.iter().any(|r| r.mean_h.is_finite()) {
            return Err(invalid(
                caption,
                "no finite mean_h in any epoch",
                "a least-control run (gradient baselines record no control magnitude H)",
            ));
        }
        sorted.push((caption.clone(), rows));
    }
    let log = sorted.iter().all(|(_, rows)| all_h_positive(rows));
    let mut panels: Vec<Panel> = sorted
        .iter()
        .map(|(c, rows)| h_and_loss_panel(rows, log, Some(c.clone())))
        .collect();
    // Shared axes: the union of every panel's data.
    let points = |right: bool, x: bool| -> Vec<f64> {
        panels
            .iter()
            .flat_map(|p| p.lines.iter())
            .filter(|l| l.right == right)
            .flat_map(|l| l.points.iter().map(move |p| if x { p.0 } else { p.1 }))
            .collect()
    };
    let mut all_x = points(false, true);
    all_x.extend(points(true, true));
    let x = Axis::epochs(&all_x);
    let y = if log {
        Axis::log10(&points(false, false))
    } else {
        Axis::linear(&points(false, false), 6)
    };
    let loss = points(true, false);
    let y2 = (!loss.is_empty()).then(|| Axis::linear(&loss, 6));
    for p in &mut panels {
        p.x = x.clone();
        p.y = y.clone();
        if p.y2.is_some() {
            p.y2 = y2.clone();
        }
    }
    let columns = panels.len().min(2);
    let grid_rows = panels.len().div_ceil(columns) as u32;
    let band = if title.trim().is_empty() {
        0
    } else {
        TITLE_HEIGHT
    };
    let fig = Figure {
        size: (
            columns as u32 * GRID_PANEL_SIZE.0,
            grid_rows * GRID_PANEL_SIZE.1 + band,
        ),
        title: title.to_string(),
        panels,
        layout: Layout::Grid(columns),
        marker: None,
    };
    render(&fig, path, format)
}

/// LCP-KP's feedback alignment over training: the angle (degrees) between the feedback
/// weights B and W^T, and between G and D^T, at the end of every epoch (they shrink as the
/// Kolen-Pollack updates make B -> W^T, G -> D^T). Written with size [`ONE_PANEL_SIZE`].
///
/// Returns `Ok(false)` and writes nothing when no epoch has a finite angle (every method
/// but LCP-KP), `Ok(true)` when the figure was written.
///
/// Errors: the file cannot be written ([`LcsimError::Io`] naming `path`).
pub fn feedback_alignment(
    rows: &[EpochMetrics],
    title: &str,
    path: &Path,
    format: FigureFormat,
) -> Result<bool> {
    if !rows.iter().any(|r| r.feedback_angle_w.is_finite()) {
        return Ok(false);
    }
    let rows = sorted_rows(rows, "rows")?;
    let epochs: Vec<f64> = rows.iter().map(|r| r.epoch as f64).collect();
    let w: Vec<f64> = rows.iter().map(|r| r.feedback_angle_w).collect();
    let d: Vec<f64> = rows.iter().map(|r| r.feedback_angle_d).collect();
    let mut g_line = Line::new("G vs Dᵀ", OKABE_ITO[1], &epochs, &d).markers();
    g_line.dashed = true;
    let lines = vec![
        Line::new("B vs Wᵀ", OKABE_ITO[0], &epochs, &w).markers(),
        g_line,
    ];
    let all: Vec<f64> = w.iter().chain(&d).copied().chain([0.0]).collect();
    let mut panel = Panel::new(
        Axis::epochs(&epochs),
        EPOCH_LABEL,
        "angle between feedback and transpose (degrees)",
        lines,
        None,
    );
    panel.y = Axis::linear(&all, 6);
    render_one_panel(panel, title, path, format)?;
    Ok(true)
}

/// Two panels side by side, x = epoch: the mean and the largest number of solver steps of
/// the controlled (LCP) or adjoint (RBP) solves (left), and the fraction of those solves and
/// of the free solves that did not converge (right, axis fixed to 0..1). Written with size
/// [`TWO_PANEL_SIZE`].
///
/// Errors: `rows` empty ([`LcsimError::InvalidValue`]); the file cannot be written
/// ([`LcsimError::Io`] naming `path`).
pub fn solver_statistics(
    rows: &[EpochMetrics],
    title: &str,
    path: &Path,
    format: FigureFormat,
) -> Result<()> {
    let rows = sorted_rows(rows, "rows")?;
    let epochs: Vec<f64> = rows.iter().map(|r| r.epoch as f64).collect();
    let x = Axis::epochs(&epochs);
    let col = |f: fn(&EpochMetrics) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    let mut max_line = Line::new("max", OKABE_ITO[1], &epochs, &col(|r| r.max_steps));
    max_line.dashed = true;
    let steps_lines = vec![
        Line::new("mean", OKABE_ITO[0], &epochs, &col(|r| r.mean_steps)),
        max_line,
    ];
    let mut free = Line::new(
        "free solves",
        OKABE_ITO[1],
        &epochs,
        &col(|r| r.fraction_free_unconverged),
    );
    free.dashed = true;
    let frac_lines = vec![
        Line::new(
            "controlled / adjoint solves",
            OKABE_ITO[0],
            &epochs,
            &col(|r| r.fraction_unconverged),
        ),
        free,
    ];
    let mut frac = Panel::new(x.clone(), EPOCH_LABEL, UNCONVERGED_LABEL, frac_lines, None);
    frac.y = Axis::unit_interval();
    let panels = vec![
        Panel::new(x, EPOCH_LABEL, STEPS_LABEL, steps_lines, None),
        frac,
    ];
    let fig = Figure {
        size: TWO_PANEL_SIZE,
        title: title.to_string(),
        panels,
        layout: Layout::Row,
        marker: None,
    };
    render(&fig, path, format)
}

/// Time courses of one simulation in panels stacked on a shared time axis
/// ("time (units of τᵥ)"): each panel `(caption, y-axis label, series)` shows its series
/// against `times` with a legend to the right of the panel, e.g. selected hidden and output
/// units, the control magnitudes |psi(t)|, |e(t)|, |u(t)| and the loss. `marker`
/// `Some((t, text))` draws a grey dashed vertical line at time `t` through all panels, labelled
/// `text` in the first panel (e.g. the time the control is switched on). Written with size
/// [`trajectories_size`]`(panels.len(), !title.is_empty())`.
///
/// Errors: no panels or no time points ([`LcsimError::InvalidValue`]); a series whose length
/// differs from `times` ([`LcsimError::Shape`]); the file cannot be written
/// ([`LcsimError::Io`] naming `path`).
pub fn trajectories(
    times: &[f64],
    panels: &[TrajectoryPanel],
    marker: Option<(f64, &str)>,
    title: &str,
    path: &Path,
    format: FigureFormat,
) -> Result<()> {
    if panels.is_empty() {
        return Err(invalid("panels", "no panels", "at least one panel"));
    }
    if panels.len() > 64 {
        return Err(invalid("panels", panels.len(), "at most 64 panels"));
    }
    if times.is_empty() {
        return Err(invalid(
            "times",
            "no time points",
            "at least one time point",
        ));
    }
    for (caption, _, series) in panels {
        for s in series {
            if s.values.len() != times.len() {
                return Err(LcsimError::Shape {
                    field: format!("panel `{caption}`, series `{}`", s.label),
                    expected: format!("{} values (one per time point)", times.len()),
                    found: format!("{} values", s.values.len()),
                });
            }
        }
    }
    let x = Axis::time(times);
    let mut out = Vec::with_capacity(panels.len());
    for (caption, y_desc, series) in panels {
        let lines: Vec<Line> = series
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut l = Line::new(&s.label, OKABE_ITO[i % OKABE_ITO.len()], times, &s.values);
                l.dashed = (i / OKABE_ITO.len()) % 2 == 1;
                l
            })
            .collect();
        let mut p = Panel::new(x.clone(), TIME_LABEL, y_desc, lines, Some(caption.clone()));
        p.y = Axis::linear(
            &series
                .iter()
                .flat_map(|s| s.values.iter().copied())
                .collect::<Vec<_>>(),
            5,
        );
        out.push(p);
    }
    let fig = Figure {
        size: trajectories_size(panels.len(), !title.is_empty()),
        title: title.to_string(),
        panels: out,
        layout: Layout::Column,
        marker: marker.map(|(t, s)| (t, s.to_string())),
    };
    render(&fig, path, format)
}

/// Size in pixels (width, height) of [`parameter_lines`] and [`heatmap`] figures.
pub const SWEEP_FIGURE_SIZE: (u32, u32) = (1200, 900);

/// The y axis of [`parameter_lines`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YScale {
    /// Linear over the data.
    Linear,
    /// Fixed to 0..1 (fractions).
    Unit,
    /// Logarithmic over the data (the finite values must be positive).
    Log,
}

/// How a curve of [`line_panels`] is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CurveStyle {
    /// Index into the colour-blind safe palette (taken modulo its 8 colours).
    pub color: usize,
    pub dashed: bool,
    /// Square instead of round markers.
    pub square: bool,
    /// Markers only, no connecting line (random samples).
    pub points_only: bool,
}

/// A curve of [`line_panels`]: `series.values[k]` belongs to `xs[k]` (NaN points skipped).
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub xs: Vec<f64>,
    pub series: Series,
    pub style: CurveStyle,
}

/// One panel of [`line_panels`].
#[derive(Clone, Debug, PartialEq)]
pub struct LinePanel {
    /// Text above the panel (empty: none).
    pub caption: String,
    pub y_label: String,
    pub y_scale: YScale,
    pub curves: Vec<Curve>,
    /// Draw the legend in this panel (where it covers the least data).
    pub legend: bool,
}

/// Size in pixels (width, height) of one panel of [`line_panels`].
pub const LINE_PANEL_SIZE: (u32, u32) = (1100, 900);

/// Curves with markers against a common x (logarithmic when `log_x`; every x must then be
/// positive), panels side by side, each y axis as its [`YScale`] says. Written with size
/// `(panels * 1100, 900)` px.
///
/// Errors: no panels, a panel without curves, a curve whose length differs from its xs, or a
/// non-positive x or y on a log axis ([`LcsimError::InvalidValue`] / [`LcsimError::Shape`]);
/// the file cannot be written ([`LcsimError::Io`] naming `path`).
pub fn line_panels(
    panels: &[LinePanel],
    x_label: &str,
    log_x: bool,
    title: &str,
    path: &Path,
    format: FigureFormat,
) -> Result<()> {
    if panels.is_empty() || panels.len() > 8 {
        return Err(invalid("panels", panels.len(), "1 to 8 panels"));
    }
    let mut out = Vec::with_capacity(panels.len());
    for p in panels {
        out.push(build_line_panel(p, x_label, log_x)?);
    }
    let fig = Figure {
        size: (LINE_PANEL_SIZE.0 * panels.len() as u32, LINE_PANEL_SIZE.1),
        title: title.to_string(),
        panels: out,
        layout: Layout::Row,
        marker: None,
    };
    render(&fig, path, format)
}

/// The [`Panel`] of a [`LinePanel`] (checks its data).
fn build_line_panel(p: &LinePanel, x_label: &str, log_x: bool) -> Result<Panel> {
    if p.curves.is_empty() {
        return Err(invalid("lines", "no series", "at least one series"));
    }
    let log_y = p.y_scale == YScale::Log;
    let (mut all_x, mut all_y) = (Vec::new(), Vec::new());
    let mut lines = Vec::new();
    for c in &p.curves {
        let (xs, s) = (&c.xs, &c.series);
        if xs.len() != s.values.len() {
            return Err(LcsimError::Shape {
                field: format!("series `{}`", s.label),
                expected: format!("{} values (one per x)", xs.len()),
                found: format!("{} values", s.values.len()),
            });
        }
        if log_x && xs.iter().any(|&x| x.is_nan() || x <= 0.0) {
            return Err(invalid("xs", format!("{xs:?}"), "positive x on a log axis"));
        }
        if log_y && s.values.iter().any(|&y| y.is_finite() && y <= 0.0) {
            return Err(invalid(
                "values",
                format!("{:?}", s.values),
                "positive y on a log axis",
            ));
        }
        let xs: Vec<f64> = if log_x {
            xs.iter().map(|x| x.log10()).collect()
        } else {
            xs.clone()
        };
        let ys: Vec<f64> = if log_y {
            s.values.iter().map(|y| y.log10()).collect()
        } else {
            s.values.clone()
        };
        all_x.extend(xs.iter().copied());
        all_y.extend(ys.iter().copied());
        let color = OKABE_ITO[c.style.color % OKABE_ITO.len()];
        let mut l = Line::new(&s.label, color, &xs, &ys).markers();
        l.dashed = c.style.dashed;
        l.square = c.style.square;
        l.points_only = c.style.points_only;
        lines.push(l);
    }
    let x = if log_x {
        Axis::log10(&all_x)
    } else {
        Axis::linear(&all_x, 6)
    };
    let caption = (!p.caption.is_empty()).then(|| p.caption.clone());
    let mut panel = Panel::new(x, x_label, &p.y_label, lines, caption);
    match p.y_scale {
        YScale::Linear => {}
        YScale::Unit => panel.y = Axis::unit_interval(),
        YScale::Log => panel.y = Axis::log10(&all_y),
    }
    panel.legend = p.legend;
    Ok(panel)
}

/// A metric against one swept parameter: one line with markers per series `(xs, series)`
/// (`series.values[k]` belongs to `xs[k]`; NaN points are skipped), x logarithmic when
/// `log_x` (all x must then be positive), y as `y_scale` says, markers only when `connect`
/// is false (random samples). Written with size [`SWEEP_FIGURE_SIZE`].
///
/// Errors: no series, a series whose length differs from its xs, or a non-positive x or y on
/// a log axis ([`LcsimError::InvalidValue`] / [`LcsimError::Shape`]); the file cannot be
/// written ([`LcsimError::Io`] naming `path`).
#[allow(clippy::too_many_arguments)]
pub fn parameter_lines(
    lines: &[(Vec<f64>, Series)],
    x_label: &str,
    y_label: &str,
    log_x: bool,
    y_scale: YScale,
    connect: bool,
    title: &str,
    path: &Path,
    format: FigureFormat,
) -> Result<()> {
    let curves = lines
        .iter()
        .enumerate()
        .map(|(i, (xs, series))| Curve {
            xs: xs.clone(),
            series: series.clone(),
            style: CurveStyle {
                color: i,
                dashed: (i / OKABE_ITO.len()) % 2 == 1,
                square: i % 2 == 1,
                points_only: !connect,
            },
        })
        .collect();
    let panel = LinePanel {
        caption: String::new(),
        y_label: y_label.to_string(),
        y_scale,
        curves,
        legend: true,
    };
    let fig = Figure {
        size: SWEEP_FIGURE_SIZE,
        title: title.to_string(),
        panels: vec![build_line_panel(&panel, x_label, log_x)?],
        layout: Layout::Row,
        marker: None,
    };
    render(&fig, path, format)
}

/// A metric over two swept parameters: `values[j][i]` is the cell of `x_ticks[i]` and
/// `y_ticks[j]` (the first y value at the bottom).
#[derive(Clone, Debug, PartialEq)]
pub struct Heatmap {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub x_ticks: Vec<String>,
    pub y_ticks: Vec<String>,
    /// One row per y value; NaN cells (no finished run) are drawn grey, marked "n/a" or
    /// with their note.
    pub values: Vec<Vec<f64>>,
    /// Text of the NaN cells, same shape as `values` (empty: "n/a" everywhere).
    pub notes: Vec<Vec<String>>,
    /// Label of the colour bar.
    pub value_label: String,
    /// Colour scale limits; None: the range of the finite values.
    pub range: Option<(f64, f64)>,
    /// Logarithmic colour scale (all values and limits must be positive).
    pub log: bool,
}

/// Draws a [`Heatmap`]: cells coloured by value (viridis, colour-blind safe and readable in
/// grey), the value printed in every cell, a colour bar with its label on the right, and the
/// parameter values as tick labels. Written with size [`SWEEP_FIGURE_SIZE`].
///
/// Errors: no cells, or rows of the wrong length ([`LcsimError::Shape`]); the file cannot
/// be written ([`LcsimError::Io`] naming `path`).
pub fn heatmap(h: &Heatmap, path: &Path, format: FigureFormat) -> Result<()> {
    if h.x_ticks.is_empty() || h.y_ticks.is_empty() {
        return Err(invalid(
            "heatmap",
            "no cells",
            "at least one x and one y value",
        ));
    }
    if h.values.len() != h.y_ticks.len() || h.values.iter().any(|r| r.len() != h.x_ticks.len()) {
        return Err(LcsimError::Shape {
            field: "heatmap values".into(),
            expected: format!("{} rows of {} values", h.y_ticks.len(), h.x_ticks.len()),
            found: format!("{:?}", h.values.iter().map(|r| r.len()).collect::<Vec<_>>()),
        });
    }
    if let Some((lo, hi)) = h.range {
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(invalid(
                "heatmap range",
                format!("{lo}..{hi}"),
                "finite lo < hi",
            ));
        }
    }
    let non_positive = h
        .values
        .iter()
        .flatten()
        .any(|&v| v.is_finite() && v <= 0.0)
        || h.range.is_some_and(|(lo, _)| lo <= 0.0);
    if h.log && non_positive {
        return Err(invalid(
            "heatmap",
            "a value or limit <= 0",
            "positive values and limits on a log colour scale",
        ));
    }
    render(h, path, format)
}

// ---------------------------------------------------------------------------------------
// Figure description (independent of the backend)
// ---------------------------------------------------------------------------------------

/// Okabe & Ito (2008) colour-blind safe palette, yellow last (weak on white).
const OKABE_ITO: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(230, 159, 0),   // orange
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
    RGBColor(240, 228, 66),  // yellow
];
const GRID: RGBColor = RGBColor(222, 222, 222);
const MINOR_GRID: RGBColor = RGBColor(242, 242, 242);
const FRAME: RGBColor = RGBColor(40, 40, 40);
const MARKER_GREY: RGBColor = RGBColor(100, 100, 100);

/// Font family: DejaVu Sans where the SVG viewer has it (metrics then match the layout),
/// the generic sans-serif otherwise; the bitmap renderer uses the bundled font for both.
const FONT: &str = "DejaVu Sans, sans-serif";
const TITLE_PX: f64 = 32.0;
const CAPTION_PX: f64 = 26.0;
const DESC_PX: f64 = 28.0;
const TICK_PX: f64 = 22.0;
const LEGEND_PX: f64 = 22.0;
const LINE_WIDTH: u32 = 3;
const MARKER_RADIUS: i32 = 6;
const TICK_MARK: i32 = 8;

/// One axis in plot coordinates (log10 of the data for logarithmic axes), with its ticks
/// and their labels.
#[derive(Clone, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    labels: Vec<String>,
    /// Unlabelled minor grid lines (2..9 × 10^k on logarithmic axes).
    minor: Vec<f64>,
}

impl Axis {
    fn coord(&self) -> AxisCoord {
        AxisCoord {
            lo: self.lo,
            hi: self.hi,
            ticks: self.ticks.clone(),
            minor: self.minor.clone(),
        }
    }

    fn label(&self, v: f64) -> String {
        match self.ticks.iter().position(|t| *t == v) {
            Some(i) => self.labels[i].clone(),
            None => format!("{v}"),
        }
    }

    fn with_linear_ticks(lo: f64, hi: f64, ticks: Vec<f64>, step: f64) -> Axis {
        let labels = linear_labels(&ticks, step);
        Axis {
            lo,
            hi,
            ticks,
            labels,
            minor: vec![],
        }
    }

    /// Linear axis over the finite values, padded by 5 % (constant data: by 10 % of the
    /// value, or 0.5 around 0) but not far below 0 for non-negative data, with about
    /// `target` ticks.
    fn linear(values: &[f64], target: usize) -> Axis {
        let data = finite_range(values).unwrap_or((0.0, 1.0));
        let (mut lo, hi) = padded(data, 0.05);
        if data.0 >= 0.0 && lo < 0.0 {
            // Non-negative data (losses, magnitudes, counts): the axis starts just below 0.
            lo = -0.03 * hi;
        }
        let step = nice_step(hi - lo, target);
        Axis::with_linear_ticks(lo, hi, ticks_in(lo, hi, step), step)
    }

    /// Linear axis over the finite values without padding (time axes start and end with
    /// the data).
    fn time(values: &[f64]) -> Axis {
        let (lo, hi) = match finite_range(values) {
            Some((lo, hi)) if hi - lo > 1e-12 * lo.abs().max(hi.abs()) => (lo, hi),
            Some(r) => padded(r, 0.0),
            None => (0.0, 1.0),
        };
        let step = nice_step(hi - lo, 8);
        Axis::with_linear_ticks(lo, hi, ticks_in(lo, hi, step), step)
    }

    /// Epoch axis: integer ticks within the epochs present, padded by 3 %.
    fn epochs(epochs: &[f64]) -> Axis {
        let (a, b) = finite_range(epochs).unwrap_or((1.0, 1.0));
        let (lo, hi) = if b > a {
            let pad = 0.03 * (b - a);
            (a - pad, b + pad)
        } else {
            (a - 1.0, a + 1.0)
        };
        let step = nice_step(b - a, 6).max(1.0).round();
        let mut ticks = ticks_in(a, b, step);
        if ticks.is_empty() {
            ticks.push(a.round());
        }
        let labels = ticks.iter().map(|t| format!("{t:.0}")).collect();
        Axis {
            lo,
            hi,
            ticks,
            labels,
            minor: vec![],
        }
    }

    /// The interval 0..1 (fractions), slightly padded so lines at 0 and 1 stay visible.
    fn unit_interval() -> Axis {
        let ticks: Vec<f64> = (0..=5).map(|k| k as f64 * 0.2).collect();
        Axis::with_linear_ticks(-0.03, 1.03, ticks, 0.2)
    }

    /// Logarithmic axis: `logs` are log10 of the data; ticks at powers of ten (or 1-2-5
    /// multiples within short ranges), labelled in the data's units.
    fn log10(logs: &[f64]) -> Axis {
        let (a, b) = finite_range(logs).unwrap_or((-1.0, 0.0));
        let (lo, hi) = if b - a < 1e-9 {
            (a - 0.4, b + 0.4)
        } else {
            let pad = 0.05 * (b - a);
            (a - pad, b + pad)
        };
        let k0 = lo.ceil() as i64;
        let k1 = hi.floor() as i64;
        let decades: Vec<i64> = if k1 >= k0 {
            (k0..=k1).collect()
        } else {
            vec![]
        };
        if decades.len() >= 2 {
            let stride = decades.len().div_ceil(7).max(1) as i64;
            let ticks: Vec<i64> = decades.into_iter().filter(|k| k % stride == 0).collect();
            let ticks = if ticks.len() >= 2 {
                ticks
            } else {
                (k0..=k1).collect()
            };
            let labels = ticks.iter().map(|&k| power_of_ten(1, k)).collect();
            let mut minor = vec![];
            if k1 - k0 <= 5 {
                for k in (k0 - 1)..=k1 {
                    for m in 2..=9 {
                        let t = (m as f64).log10() + k as f64;
                        if t >= lo && t <= hi {
                            minor.push(t);
                        }
                    }
                }
            }
            return Axis {
                lo,
                hi,
                ticks: ticks.iter().map(|&k| k as f64).collect(),
                labels,
                minor,
            };
        }
        for mantissas in [&[1, 2, 5][..], &[1, 2, 3, 4, 5, 6, 7, 8, 9][..]] {
            let mut ticks = vec![];
            let mut labels = vec![];
            for k in (lo.floor() as i64)..=(hi.ceil() as i64) {
                for &m in mantissas {
                    let t = (m as f64).log10() + k as f64;
                    if t >= lo && t <= hi {
                        ticks.push(t);
                        labels.push(power_of_ten(m, k));
                    }
                }
            }
            if ticks.len() >= 2 {
                return Axis {
                    lo,
                    hi,
                    ticks,
                    labels,
                    minor: vec![],
                };
            }
        }
        // Less than a factor of ~1.1: linear labels of the data values.
        let (dlo, dhi) = (10f64.powf(lo), 10f64.powf(hi));
        let step = nice_step(dhi - dlo, 4);
        let values = ticks_in(dlo, dhi, step);
        let labels = linear_labels(&values, step);
        Axis {
            lo,
            hi,
            ticks: values.iter().map(|v| v.log10()).collect(),
            labels,
            minor: vec![],
        }
    }
}

/// A linear plotters coordinate with our own ticks and minor grid lines.
struct AxisCoord {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    minor: Vec<f64>,
}

impl Ranged for AxisCoord {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        let t = if span > 0.0 && span.is_finite() {
            (v - self.lo) / span
        } else {
            0.5
        };
        let px = limit.0 as f64 + t * (limit.1 - limit.0) as f64;
        // Far outside the plot (or NaN): clamp instead of overflowing.
        px.clamp(-1e6, 1e6).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// "10⁻³" or "2×10⁻³".
fn power_of_ten(mantissa: i64, exponent: i64) -> String {
    let sup: String = exponent
        .to_string()
        .chars()
        .map(|c| match c {
            '-' => '⁻',
            '0' => '⁰',
            '1' => '¹',
            '2' => '²',
            '3' => '³',
            '4' => '⁴',
            '5' => '⁵',
            '6' => '⁶',
            '7' => '⁷',
            '8' => '⁸',
            _ => '⁹',
        })
        .collect();
    if mantissa == 1 {
        format!("10{sup}")
    } else {
        format!("{mantissa}×10{sup}")
    }
}

/// Labels of linear ticks spaced by `step` (a 1-2-5 multiple of a power of ten): fixed
/// decimals for moderate magnitudes, a common power of ten otherwise.
fn linear_labels(ticks: &[f64], step: f64) -> Vec<String> {
    let max = ticks.iter().fold(0f64, |m, t| m.max(t.abs()));
    let step_exp = step.log10().floor();
    let clean = |t: f64| if t.abs() < step * 1e-6 { 0.0 } else { t };
    if max < 1e5 && step >= 1e-3 || max == 0.0 || !step.is_finite() {
        let decimals = (-step_exp).max(0.0) as usize;
        ticks
            .iter()
            .map(|&t| format!("{:.*}", decimals, clean(t)).replace('-', "−"))
            .collect()
    } else {
        let e = max.log10().floor();
        let decimals = (e - step_exp).max(0.0) as usize;
        ticks
            .iter()
            .map(|&t| {
                let t = clean(t);
                if t == 0.0 {
                    "0".to_string()
                } else {
                    let m = format!("{:.*}", decimals, t / 10f64.powf(e)).replace('-', "−");
                    let p = power_of_ten(1, e as i64);
                    format!("{m}×{p}")
                }
            })
            .collect()
    }
}

fn finite_range(values: &[f64]) -> Option<(f64, f64)> {
    values
        .iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, &v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// Pads a data range by `frac` of its span on each side; a (nearly) constant range is
/// widened to 10 % of its magnitude (0.5 around zero).
fn padded((lo, hi): (f64, f64), frac: f64) -> (f64, f64) {
    let scale = lo.abs().max(hi.abs());
    let span = hi - lo;
    if !span.is_finite() {
        return (-f64::MAX / 4.0, f64::MAX / 4.0);
    }
    if span <= 1e-9 * scale || span == 0.0 {
        let p = scale * 0.1;
        let p = if p.is_finite() && p > 1e-300 { p } else { 0.5 };
        let mid = 0.5 * (lo + hi);
        return (mid - p, mid + p);
    }
    (lo - frac * span, hi + frac * span)
}

/// A 1-2-5 multiple of a power of ten giving about `target` intervals over `span`.
fn nice_step(span: f64, target: usize) -> f64 {
    if !(span.is_finite() && span > 0.0) {
        return 1.0;
    }
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    let m = if n < 1.5 {
        1.0
    } else if n < 3.0 {
        2.0
    } else if n < 7.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Multiples of `step` within [lo, hi] (at most 200).
fn ticks_in(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    if !(step.is_finite() && step > 0.0) {
        return vec![];
    }
    let k0 = (lo / step - 1e-9).ceil();
    let k1 = (hi / step + 1e-9).floor();
    if !(k0.is_finite() && k1.is_finite()) || k1 - k0 > 200.0 || k1 < k0 {
        return vec![];
    }
    (k0 as i64..=k1 as i64).map(|k| k as f64 * step).collect()
}

/// The rows sorted by epoch; error when there are none.
fn sorted_rows(rows: &[EpochMetrics], field: &str) -> Result<Vec<EpochMetrics>> {
    if rows.is_empty() {
        return Err(invalid(field, "no epochs", "at least one epoch"));
    }
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| r.epoch);
    Ok(rows)
}

/// A curve: finite points only.
#[derive(Clone, Debug)]
struct Line {
    label: String,
    color: RGBColor,
    dashed: bool,
    markers: bool,
    /// Square instead of round markers.
    square: bool,
    /// Drawn against the right (secondary) y axis.
    right: bool,
    /// Markers only, no connecting line (a scatter).
    points_only: bool,
    points: Vec<(f64, f64)>,
}

impl Line {
    fn new(label: &str, color: RGBColor, xs: &[f64], ys: &[f64]) -> Line {
        let points = xs
            .iter()
            .zip(ys)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(&x, &y)| (x, y))
            .collect();
        Line {
            label: label.to_string(),
            color,
            dashed: false,
            markers: false,
            square: false,
            right: false,
            points_only: false,
            points,
        }
    }

    fn markers(mut self) -> Line {
        self.markers = true;
        self
    }

    /// Markers are drawn when asked for, and always for a lone point (a line through one
    /// point is invisible).
    fn draws_markers(&self) -> bool {
        self.markers || self.points_only || self.points.len() == 1
    }
}

#[derive(Clone, Debug)]
struct Panel {
    caption: Option<String>,
    x: Axis,
    y: Axis,
    y2: Option<Axis>,
    x_desc: String,
    y_desc: String,
    y2_desc: String,
    lines: Vec<Line>,
    /// Draw this panel's legend.
    legend: bool,
}

impl Panel {
    fn new(x: Axis, x_desc: &str, y_desc: &str, lines: Vec<Line>, caption: Option<String>) -> Self {
        let y = Axis::linear(
            &lines
                .iter()
                .flat_map(|l| l.points.iter().map(|p| p.1))
                .collect::<Vec<_>>(),
            6,
        );
        Panel {
            caption,
            x,
            y,
            y2: None,
            x_desc: x_desc.to_string(),
            y_desc: y_desc.to_string(),
            y2_desc: String::new(),
            lines,
            legend: true,
        }
    }

    fn visible_lines(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(|l| !l.points.is_empty())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// Panels side by side, each with its own axes and a legend inside.
    Row,
    /// Panels stacked on a shared x axis, legends to the right of the panels.
    Column,
    /// Panels in a grid of this many columns, filled row by row, each as in `Row`.
    Grid(usize),
}

#[derive(Clone, Debug)]
struct Figure {
    size: (u32, u32),
    title: String,
    panels: Vec<Panel>,
    layout: Layout,
    /// Vertical marker line (x, label) drawn through all panels.
    marker: Option<(f64, String)>,
}

// ---------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------

/// A drawing failure, as text.
struct DrawError(String);

impl<E: std::error::Error + Send + Sync> From<DrawingAreaErrorKind<E>> for DrawError {
    fn from(e: DrawingAreaErrorKind<E>) -> Self {
        DrawError(e.to_string())
    }
}

type DResult<T> = std::result::Result<T, DrawError>;

static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Registers the bundled font under [`FONT`] and as `sans-serif` (once per process).
fn ensure_font() -> std::result::Result<(), String> {
    static REGISTERED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            [FONT, "sans-serif"]
                .iter()
                .try_for_each(|name| register_font(name, FontStyle::Normal, FONT_BYTES))
                .map_err(|_| "the bundled font DejaVuSans.ttf could not be loaded".to_string())
        })
        .clone()
}

fn font(px: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, px).into_font()).color(&BLACK)
}

/// Renders `fig` to a temporary file next to `path`, then renames it onto `path`.
fn render(fig: &impl Drawable, path: &Path, format: FigureFormat) -> Result<()> {
    let io_err = |source: std::io::Error| LcsimError::Io {
        path: path.to_path_buf(),
        source,
    };
    let draw_err = |e: DrawError| io_err(std::io::Error::other(format!("drawing failed: {}", e.0)));
    ensure_font().map_err(|m| io_err(std::io::Error::other(m)))?;
    let tmp = create_temp(path, format).map_err(io_err)?;
    let outcome = match format {
        FigureFormat::Png => {
            let result = {
                let root = BitMapBackend::new(&tmp.0, fig.size()).into_drawing_area();
                fig.draw_on(&root, TextFix::BITMAP)
                    .and_then(|()| root.present().map_err(DrawError::from))
            };
            result.map_err(draw_err)
        }
        FigureFormat::Svg => {
            let mut text = String::new();
            let result = {
                let root = SVGBackend::with_string(&mut text, fig.size()).into_drawing_area();
                fig.draw_on(&root, TextFix::NONE)
                    .and_then(|()| root.present().map_err(DrawError::from))
            };
            result
                .map_err(draw_err)
                .and_then(|()| std::fs::write(&tmp.0, text).map_err(io_err))
        }
    };
    outcome?;
    std::fs::rename(&tmp.0, path).map_err(io_err)?;
    tmp.disarm();
    Ok(())
}

/// Something [`render`] can draw: a [`Figure`] of panels or a [`Heatmap`].
trait Drawable {
    fn size(&self) -> (u32, u32);
    fn draw_on<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        fix: TextFix,
    ) -> DResult<()>;
}

impl Drawable for Figure {
    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn draw_on<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        fix: TextFix,
    ) -> DResult<()> {
        draw_figure(root, self, fix)
    }
}

/// A temporary file that is removed on drop unless disarmed (after the rename).
struct TempFile(PathBuf, bool);

impl TempFile {
    fn disarm(mut self) {
        self.1 = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Creates an empty, uniquely named hidden file in the directory of `path`. Its name ends in
/// the format's extension (the bitmap encoder picks the format from it).
fn create_temp(path: &Path, format: FigureFormat) -> std::io::Result<TempFile> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "figure".to_string());
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{name}.{}.{n}.tmp.{}",
            std::process::id(),
            format.extension()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(_) => return Ok(TempFile(tmp, true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Widest rendered text of `texts` in pixels.
fn max_text_width<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    texts: impl IntoIterator<Item = String>,
    style: &TextStyle,
) -> DResult<i32> {
    let mut w = 0;
    for t in texts {
        w = w.max(area.estimate_text_size(&t, style)?.0 as i32);
    }
    Ok(w)
}

/// Corrects where the bitmap text renderer puts text vertically. The ab_glyph rasteriser of
/// plotters places the baseline half a font size below the anchor's top, which lifts
/// centred text by about 0.22 font sizes; the SVG backend leaves placement to the viewer.
#[derive(Clone, Copy, Debug)]
struct TextFix {
    /// Downward shift of vertically centred text, in font sizes.
    center: f64,
    /// Downward shift of top-anchored text, in font sizes.
    top: f64,
}

impl TextFix {
    const BITMAP: TextFix = TextFix {
        center: 0.216,
        top: 0.126,
    };
    const NONE: TextFix = TextFix {
        center: 0.0,
        top: 0.0,
    };

    fn dy(self, px: f64, v: VPos) -> i32 {
        let f = match v {
            VPos::Center => self.center,
            VPos::Top => self.top,
            VPos::Bottom => 0.0,
        };
        (f * px).round() as i32
    }
}

/// Pixel layout shared by all panels of a figure, so their axes line up.
struct PanelLayout {
    /// Width of the left (y) label area: tick labels and the rotated axis label.
    y_area: i32,
    /// Width of the right label area (0 without a secondary axis).
    y2_area: i32,
    /// Height of the x label area (small when the tick labels are hidden).
    x_area: i32,
    show_x_labels: bool,
    /// Legend to the right of the plot with this width, else inside the plot.
    outside_legend: Option<i32>,
    /// Draw the text of the vertical marker.
    marker_text: bool,
    fix: TextFix,
}

fn draw_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &Figure,
    fix: TextFix,
) -> DResult<()> {
    root.fill(&WHITE)?;
    let (w, _) = root.dim_in_pixel();
    let body = if fig.title.trim().is_empty() {
        root.clone()
    } else {
        let style = font(TITLE_PX).pos(Pos::new(HPos::Center, VPos::Top));
        let dy = fix.dy(TITLE_PX, VPos::Top);
        root.draw_text(&fig.title, &style, (w as i32 / 2, 18 + dy))?;
        root.clone().margin(TITLE_HEIGHT as i32, 0, 0, 0)
    };
    let tick = font(TICK_PX);
    let tick_w = |axis: &Axis| max_text_width(root, axis.labels.iter().cloned(), &tick);
    let desc_band = (DESC_PX * 1.3) as i32;
    match fig.layout {
        Layout::Row | Layout::Grid(_) => {
            let n = fig.panels.len().max(1);
            let columns = match fig.layout {
                Layout::Grid(c) => c.clamp(1, n),
                _ => n,
            };
            let areas = body.split_evenly((n.div_ceil(columns), columns));
            for (panel, area) in fig.panels.iter().zip(areas.iter()) {
                let y2_area = match &panel.y2 {
                    Some(a) => tick_w(a)? + 2 * TICK_MARK + desc_band + 20,
                    None => 0,
                };
                let layout = PanelLayout {
                    y_area: tick_w(&panel.y)? + 2 * TICK_MARK + desc_band + 20,
                    y2_area,
                    x_area: (TICK_PX * 1.2) as i32 + 2 * TICK_MARK + desc_band + 16,
                    show_x_labels: true,
                    outside_legend: None,
                    marker_text: true,
                    fix,
                };
                draw_panel(area, panel, &layout, fig.marker.as_ref())?;
            }
        }
        Layout::Column => {
            let n = fig.panels.len().max(1) as u32;
            let (_, bh) = body.dim_in_pixel();
            let per = (bh.saturating_sub(X_AXIS_HEIGHT + 10)) / n;
            let mut breaks: Vec<u32> = (1..n).map(|i| i * per).collect();
            breaks.dedup();
            let areas = body.split_by_breakpoints::<u32, u32, _, _>([], breaks);
            let mut y_area = 0;
            for p in &fig.panels {
                y_area = y_area.max(tick_w(&p.y)?);
            }
            let y_area = y_area + 2 * TICK_MARK + desc_band + 20;
            let legend = font(LEGEND_PX);
            let label_w = max_text_width(
                root,
                fig.panels
                    .iter()
                    .flat_map(|p| p.visible_lines().map(|l| l.label.clone())),
                &legend,
            )?;
            let legend_w = (label_w + 90).clamp(120, w as i32 * 2 / 5);
            for (i, (panel, area)) in fig.panels.iter().zip(areas.iter()).enumerate() {
                let last = i + 1 == fig.panels.len();
                let layout = PanelLayout {
                    y_area,
                    y2_area: 0,
                    x_area: if last {
                        (TICK_PX * 1.2) as i32 + 2 * TICK_MARK + desc_band + 16
                    } else {
                        TICK_MARK + 4
                    },
                    show_x_labels: last,
                    outside_legend: Some(legend_w),
                    marker_text: i == 0,
                    fix,
                };
                draw_panel(area, panel, &layout, fig.marker.as_ref())?;
            }
        }
    }
    Ok(())
}

/// Draws text at absolute pixel coordinates (`DrawingArea::draw_text` is relative to the
/// area's corner whatever its coordinate system).
fn text_at<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle,
    (x, y): (i32, i32),
) -> DResult<()> {
    let (bx, by) = area.get_base_pixel();
    area.draw_text(text, style, (x - bx, y - by))?;
    Ok(())
}

/// Shortens `text` with an ellipsis until it fits `max_w` pixels.
fn fit_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle,
    max_w: i32,
) -> DResult<String> {
    if area.estimate_text_size(text, style)?.0 as i32 <= max_w {
        return Ok(text.to_string());
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let t: String = chars.iter().collect::<String>() + "…";
        if area.estimate_text_size(&t, style)?.0 as i32 <= max_w {
            return Ok(t);
        }
    }
    Ok(String::new())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    layout: &PanelLayout,
    marker: Option<&(f64, String)>,
) -> DResult<()> {
    let (aw, _) = area.dim_in_pixel();
    let (chart_area, legend_area) = match layout.outside_legend {
        Some(lw) => {
            let (a, b) = area.split_horizontally(aw as i32 - lw);
            (a, Some(b))
        }
        None => (area.clone(), None),
    };
    let tick = font(TICK_PX);
    let desc = font(DESC_PX);
    let right_margin = if layout.y2_area > 0 || legend_area.is_some() {
        16
    } else {
        36
    };
    let mut builder = ChartBuilder::on(&chart_area);
    builder
        .margin_top(if panel.caption.is_some() {
            (CAPTION_PX * 1.6) as i32
        } else {
            24
        })
        .margin_bottom(if layout.show_x_labels { 12 } else { 6 })
        .margin_left(12)
        .margin_right(right_margin)
        .x_label_area_size(layout.x_area)
        .y_label_area_size(layout.y_area)
        .right_y_label_area_size(layout.y2_area);
    let x = &panel.x;
    let y = &panel.y;
    let chart = builder.build_cartesian_2d(x.coord(), y.coord())?;
    let y2 = panel.y2.clone().unwrap_or_else(|| y.clone());
    let mut chart = chart.set_secondary_coord(x.coord(), y2.coord());
    let x_fmt = |v: &f64| {
        if layout.show_x_labels {
            x.label(*v)
        } else {
            String::new()
        }
    };
    let y_fmt = |v: &f64| y.label(*v);
    let axis_style = ShapeStyle::from(&FRAME).stroke_width(2);
    {
        let mut mesh = chart.configure_mesh();
        mesh.bold_line_style(ShapeStyle::from(&GRID).stroke_width(1))
            .light_line_style(ShapeStyle::from(&MINOR_GRID).stroke_width(1))
            .axis_style(axis_style)
            .set_all_tick_mark_size(TICK_MARK)
            .label_style(tick.clone())
            .axis_desc_style(desc.clone())
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .y_label_offset(layout.fix.dy(TICK_PX, VPos::Center))
            .y_desc(panel.y_desc.as_str());
        if layout.show_x_labels {
            mesh.x_desc(panel.x_desc.as_str());
        }
        mesh.draw()?;
    }
    if panel.y2.is_some() {
        let y2_fmt = |v: &f64| y2.label(*v);
        chart
            .configure_secondary_axes()
            .axis_style(axis_style)
            .set_all_tick_mark_size(TICK_MARK)
            .label_style(tick.clone())
            .y_label_formatter(&y2_fmt)
            .y_label_offset(layout.fix.dy(TICK_PX, VPos::Center))
            .draw()?;
    }

    // Curves.
    let mut pixel_paths: Vec<Vec<(i32, i32)>> = vec![];
    for line in panel.visible_lines() {
        let style = ShapeStyle::from(&line.color).stroke_width(LINE_WIDTH);
        let pts = line.points.clone();
        if line.right {
            let pa = chart.secondary_plotting_area();
            draw_curve(pa, line, &pts, style)?;
            pixel_paths.push(pts.iter().map(|p| pa.map_coordinate(p)).collect());
        } else {
            let pa = chart.plotting_area();
            draw_curve(pa, line, &pts, style)?;
            pixel_paths.push(pts.iter().map(|p| pa.map_coordinate(p)).collect());
        }
    }

    let pa = chart.plotting_area();
    let (xr, yr) = pa.get_pixel_range();
    let screen = area.use_screen_coord();
    // Frame around the plot (the axes draw only the left/bottom/right edges).
    screen.draw(&Rectangle::new(
        [(xr.start, yr.start), (xr.end - 1, yr.end - 1)],
        axis_style,
    ))?;

    // Panel caption, left-aligned above the plot.
    let mut caption_end = xr.start;
    if let Some(c) = panel.caption.as_deref().filter(|c| !c.is_empty()) {
        let style = font(CAPTION_PX).pos(Pos::new(HPos::Left, VPos::Bottom));
        let c = fit_text(&screen, c, &style, xr.end - xr.start)?;
        caption_end = xr.start + screen.estimate_text_size(&c, &style)?.0 as i32;
        text_at(&screen, &c, &style, (xr.start, yr.start - 8))?;
    }

    // Vertical marker.
    if let Some((t, text)) = marker {
        if t.is_finite() && *t >= x.lo && *t <= x.hi {
            let (px, _) = pa.map_coordinate(&(*t, y.lo));
            screen.draw(&DashedPathElement::new(
                vec![(px, yr.start + 2), (px, yr.end - 2)],
                10,
                7,
                ShapeStyle::from(&MARKER_GREY).stroke_width(2),
            ))?;
            let style = font(LEGEND_PX)
                .color(&MARKER_GREY)
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            let tw = screen.estimate_text_size(text, &style)?.0 as i32;
            let above = panel.caption.is_some()
                && px - tw / 2 > caption_end + 16
                && px + tw / 2 <= area.get_base_pixel().0 + aw as i32;
            if layout.marker_text && !text.is_empty() && above {
                // In the caption band, centred on the line.
                text_at(&screen, text, &style, (px, yr.start - 8))?;
            } else if layout.marker_text && !text.is_empty() {
                let left_half = px < (xr.start + xr.end) / 2 + (xr.end - xr.start) / 4;
                let (hp, tx) = if left_half {
                    (HPos::Left, px + 8)
                } else {
                    (HPos::Right, px - 8)
                };
                let style = font(LEGEND_PX)
                    .color(&MARKER_GREY)
                    .pos(Pos::new(hp, VPos::Top));
                let (tw, th) = screen.estimate_text_size(text, &style)?;
                let (tw, th) = (tw as i32, th as i32);
                let ty = yr.start + 10;
                let bx = if left_half { tx - 4 } else { tx - tw - 4 };
                // A light box keeps the label readable over the curves.
                screen.draw(&Rectangle::new(
                    [(bx, ty - 5), (bx + tw + 8, ty + th + 5)],
                    WHITE.mix(0.85).filled(),
                ))?;
                text_at(
                    &screen,
                    text,
                    &style,
                    (tx, ty + layout.fix.dy(LEGEND_PX, VPos::Top)),
                )?;
                // Keep an inside legend away from the marker label.
                pixel_paths.push(vec![
                    (bx, ty),
                    (bx + tw, ty),
                    (bx, ty + th),
                    (bx + tw, ty + th),
                ]);
            }
        }
    }

    // Secondary axis label, reading bottom to top like the left one.
    if panel.y2.is_some() && !panel.y2_desc.is_empty() {
        let (cw, _) = chart_area.dim_in_pixel();
        let base = chart_area.get_base_pixel();
        let style = desc
            .clone()
            .transform(FontTransform::Rotate270)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        let x_edge = base.0 + cw as i32 - right_margin;
        text_at(
            &screen,
            &panel.y2_desc,
            &style,
            (x_edge, (yr.start + yr.end) / 2),
        )?;
    }

    let visible: Vec<&Line> = panel.visible_lines().collect();
    if visible.is_empty() {
        let style = font(DESC_PX)
            .color(&MARKER_GREY)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let dy = layout.fix.dy(DESC_PX, VPos::Center);
        text_at(
            &screen,
            "not measured",
            &style,
            ((xr.start + xr.end) / 2, (yr.start + yr.end) / 2 + dy),
        )?;
        return Ok(());
    }
    if !panel.legend {
        return Ok(());
    }
    match legend_area {
        Some(la) => {
            let base = la.get_base_pixel();
            let (lw, _) = la.dim_in_pixel();
            draw_legend(
                &screen,
                &visible,
                LegendPlace::Outside {
                    x: base.0 + 4,
                    y: yr.start,
                    max_w: lw as i32 - 8,
                    max_h: yr.end - yr.start,
                },
                &pixel_paths,
                layout.fix,
            )?;
        }
        None => {
            draw_legend(
                &screen,
                &visible,
                LegendPlace::Inside { xr, yr },
                &pixel_paths,
                layout.fix,
            )?;
        }
    }
    Ok(())
}

fn draw_curve<DB: DrawingBackend, CT: plotters::coord::CoordTranslate<From = (f64, f64)>>(
    pa: &DrawingArea<DB, CT>,
    line: &Line,
    pts: &[(f64, f64)],
    style: ShapeStyle,
) -> DResult<()> {
    if pts.len() >= 2 && !line.points_only {
        if line.dashed {
            pa.draw(&DashedPathElement::new(pts.to_vec(), 14, 8, style))?;
        } else {
            pa.draw(&PathElement::new(pts.to_vec(), style))?;
        }
    }
    if line.draws_markers() {
        for p in pts {
            let c = pa.map_coordinate(p);
            draw_marker(&pa.use_screen_coord(), line, c, style)?;
        }
    }
    Ok(())
}

/// A filled marker centred on the screen point `c`.
fn draw_marker<DB: DrawingBackend>(
    screen: &DrawingArea<DB, Shift>,
    line: &Line,
    c: (i32, i32),
    style: ShapeStyle,
) -> DResult<()> {
    if line.square {
        let r = MARKER_RADIUS;
        screen.draw(&Rectangle::new(
            [(c.0 - r, c.1 - r), (c.0 + r, c.1 + r)],
            style.filled(),
        ))?;
    } else {
        screen.draw(&Circle::new(c, MARKER_RADIUS, style.filled()))?;
    }
    Ok(())
}

enum LegendPlace {
    /// Inside the plot rectangle, in the corner (or edge middle) with the least data under it.
    Inside {
        xr: std::ops::Range<i32>,
        yr: std::ops::Range<i32>,
    },
    /// A column starting at (x, y).
    Outside {
        x: i32,
        y: i32,
        max_w: i32,
        max_h: i32,
    },
}

/// Draws a legend box in screen coordinates.
fn draw_legend<DB: DrawingBackend>(
    screen: &DrawingArea<DB, Shift>,
    lines: &[&Line],
    place: LegendPlace,
    pixel_paths: &[Vec<(i32, i32)>],
    fix: TextFix,
) -> DResult<()> {
    const ICON: i32 = 44;
    const PAD: i32 = 12;
    const GAP: i32 = 10;
    let n = lines.len() as i32;
    let (mut font_px, mut row_h) = (LEGEND_PX, (LEGEND_PX * 1.45) as i32);
    if let LegendPlace::Outside { max_h, .. } = place {
        if n * row_h + 2 * PAD > max_h {
            row_h = ((max_h - 2 * PAD) / n.max(1)).max(12);
            font_px = (row_h as f64 / 1.45).max(10.0);
        }
    }
    let style = font(font_px).pos(Pos::new(HPos::Left, VPos::Center));
    let max_label_w = match place {
        LegendPlace::Outside { max_w, .. } => max_w - 2 * PAD - ICON - GAP,
        LegendPlace::Inside { ref xr, .. } => (xr.end - xr.start) / 2,
    };
    let mut labels = vec![];
    for l in lines {
        labels.push(fit_text(screen, &l.label, &style, max_label_w)?);
    }
    let text_w = max_text_width(screen, labels.iter().cloned(), &style)?;
    let box_w = 2 * PAD + ICON + GAP + text_w;
    let box_h = 2 * PAD + n * row_h;
    let (x0, y0, boxed) = match place {
        LegendPlace::Outside { x, y, .. } => (x, y, false),
        LegendPlace::Inside { xr, yr } => {
            let inset = 14;
            let candidates = [
                (xr.end - inset - box_w, yr.start + inset),
                (xr.end - inset - box_w, yr.end - inset - box_h),
                (xr.start + inset, yr.start + inset),
                (xr.start + inset, yr.end - inset - box_h),
                ((xr.start + xr.end - box_w) / 2, yr.start + inset),
                ((xr.start + xr.end - box_w) / 2, yr.end - inset - box_h),
                (xr.end - inset - box_w, (yr.start + yr.end - box_h) / 2),
                (xr.start + inset, (yr.start + yr.end - box_h) / 2),
            ];
            let mut best = (usize::MAX, candidates[0]);
            for c in candidates {
                let hits = occupancy(pixel_paths, (c.0 - 6, c.1 - 6, box_w + 12, box_h + 12));
                if hits < best.0 {
                    best = (hits, c);
                }
            }
            (best.1 .0, best.1 .1, true)
        }
    };
    if boxed {
        screen.draw(&Rectangle::new(
            [(x0, y0), (x0 + box_w, y0 + box_h)],
            WHITE.mix(0.88).filled(),
        ))?;
        screen.draw(&Rectangle::new(
            [(x0, y0), (x0 + box_w, y0 + box_h)],
            ShapeStyle::from(&RGBColor(170, 170, 170)).stroke_width(1),
        ))?;
    }
    for (i, (l, text)) in lines.iter().zip(&labels).enumerate() {
        let cy = y0 + PAD + i as i32 * row_h + row_h / 2;
        let style_l = ShapeStyle::from(&l.color).stroke_width(LINE_WIDTH);
        let a = (x0 + PAD, cy);
        let b = (x0 + PAD + ICON, cy);
        if l.points_only {
        } else if l.dashed {
            screen.draw(&DashedPathElement::new(vec![a, b], 12, 6, style_l))?;
        } else {
            screen.draw(&PathElement::new(vec![a, b], style_l))?;
        }
        if l.draws_markers() {
            draw_marker(screen, l, (x0 + PAD + ICON / 2, cy), style_l)?;
        }
        let dy = fix.dy(font_px, VPos::Center);
        text_at(screen, text, &style, (x0 + PAD + ICON + GAP, cy + dy))?;
    }
    Ok(())
}

/// How much of the drawn data falls into the rectangle (x, y, w, h): the number of points
/// sampled every few pixels along the paths.
fn occupancy(paths: &[Vec<(i32, i32)>], (x, y, w, h): (i32, i32, i32, i32)) -> usize {
    let inside = |px: f64, py: f64| {
        px >= x as f64 && px <= (x + w) as f64 && py >= y as f64 && py <= (y + h) as f64
    };
    let mut hits = 0;
    for path in paths {
        if let [p] = path.as_slice() {
            hits += 20 * inside(p.0 as f64, p.1 as f64) as usize;
        }
        for seg in path.windows(2) {
            let (a, b) = (seg[0], seg[1]);
            let len = (((b.0 - a.0) as f64).powi(2) + ((b.1 - a.1) as f64).powi(2)).sqrt();
            let steps = ((len / 4.0).ceil() as usize).clamp(1, 2000);
            for k in 0..=steps {
                let t = k as f64 / steps as f64;
                let px = a.0 as f64 + t * (b.0 - a.0) as f64;
                let py = a.1 as f64 + t * (b.1 - a.1) as f64;
                hits += inside(px, py) as usize;
            }
        }
    }
    hits
}

// ---------------------------------------------------------------------------------------
// Heatmaps
// ---------------------------------------------------------------------------------------

/// Viridis (matplotlib) at t = 0, 1/8, ..., 1.
const VIRIDIS: [(f64, f64, f64); 9] = [
    (68.0, 1.0, 84.0),
    (72.0, 36.0, 117.0),
    (59.0, 82.0, 139.0),
    (44.0, 114.0, 142.0),
    (33.0, 145.0, 140.0),
    (40.0, 174.0, 128.0),
    (94.0, 201.0, 98.0),
    (173.0, 220.0, 48.0),
    (253.0, 231.0, 37.0),
];

/// The viridis colour at t in [0, 1] (clamped).
fn viridis(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * 8.0;
    let k = (x.floor() as usize).min(7);
    let f = x - k as f64;
    let (a, b) = (VIRIDIS[k], VIRIDIS[k + 1]);
    let mix = |p: f64, q: f64| (p + f * (q - p)).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// A cell value: three decimals for moderate values, else three significant digits.
fn cell_text(v: f64) -> String {
    if !v.is_finite() {
        "n/a".into()
    } else if v == 0.0 || (v.abs() >= 0.01 && v.abs() < 10.0) {
        format!("{v:.3}")
    } else if v.abs() >= 10.0 && v.abs() < 100.0 {
        format!("{v:.1}")
    } else if v.abs() >= 100.0 && v.abs() < 1e5 {
        format!("{v:.0}")
    } else {
        format!("{v:.2e}")
    }
}

/// Ticks of a logarithmic colour bar over log10 values lo..hi: 1-2-5 multiples of powers
/// of ten (only the powers when that gives more than 7), labelled plainly (200, 0.05) for
/// moderate values and as powers of ten otherwise.
fn log_bar_ticks(lo: f64, hi: f64) -> (Vec<f64>, Vec<String>) {
    let within = |mantissas: &[i64]| {
        let mut out = vec![];
        for k in (lo.floor() as i64)..=(hi.ceil() as i64) {
            for &m in mantissas {
                let t = (m as f64).log10() + k as f64;
                if t >= lo - 1e-9 && t <= hi + 1e-9 {
                    out.push((t, m, k));
                }
            }
        }
        out
    };
    let mut ticks = within(&[1, 2, 5]);
    if ticks.len() > 7 {
        ticks = within(&[1]);
    }
    ticks
        .into_iter()
        .map(|(t, m, k)| {
            let v = m as f64 * 10f64.powi(k as i32);
            let label = if (0.01..1e5).contains(&v) {
                format!("{}", (v * 100.0).round() / 100.0)
            } else {
                power_of_ten(m, k)
            };
            (t, label)
        })
        .unzip()
}

impl Heatmap {
    /// The colour scale limits in colour coordinates (log10 on a log scale; padded when the
    /// values are all equal).
    fn limits(&self) -> (f64, f64) {
        let scale = |v: f64| if self.log { v.log10() } else { v };
        if let Some((lo, hi)) = self.range {
            return (scale(lo), scale(hi));
        }
        let all: Vec<f64> = self.values.iter().flatten().map(|&v| scale(v)).collect();
        match finite_range(&all) {
            Some((lo, hi)) if hi > lo => (lo, hi),
            Some(r) => padded(r, 0.0),
            None => (0.0, 1.0),
        }
    }
}

impl Drawable for Heatmap {
    fn size(&self) -> (u32, u32) {
        SWEEP_FIGURE_SIZE
    }

    fn draw_on<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        fix: TextFix,
    ) -> DResult<()> {
        draw_heatmap(root, self, fix)
    }
}

fn draw_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    h: &Heatmap,
    fix: TextFix,
) -> DResult<()> {
    root.fill(&WHITE)?;
    let (w, ht) = root.dim_in_pixel();
    let (w, ht) = (w as i32, ht as i32);
    let mut top = 24;
    if !h.title.trim().is_empty() {
        let style = font(TITLE_PX).pos(Pos::new(HPos::Center, VPos::Top));
        let title = fit_text(root, &h.title, &style, w - 40)?;
        text_at(
            root,
            &title,
            &style,
            (w / 2, 18 + fix.dy(TITLE_PX, VPos::Top)),
        )?;
        top = TITLE_HEIGHT as i32 + 10;
    }
    let tick = font(TICK_PX);
    let desc_band = (DESC_PX * 1.3) as i32;
    let (lo, hi) = h.limits();
    let (bar_ticks, bar_labels): (Vec<f64>, Vec<String>) = if h.log {
        log_bar_ticks(lo, hi)
    } else {
        let step = nice_step(hi - lo, 5);
        let ticks = ticks_in(lo, hi, step);
        let labels = linear_labels(&ticks, step);
        (ticks, labels)
    };
    let y_tick_w = max_text_width(root, h.y_ticks.iter().cloned(), &tick)?;
    let bar_tick_w = max_text_width(root, bar_labels.iter().cloned(), &tick)?;
    const BAR_W: i32 = 34;
    const BAR_GAP: i32 = 36;
    let left = 16 + desc_band + y_tick_w + 2 * TICK_MARK;
    let right = BAR_GAP + BAR_W + TICK_MARK + 6 + bar_tick_w + 14 + desc_band + 10;
    let bottom = (TICK_PX * 1.2) as i32 + 2 * TICK_MARK + desc_band + 20;
    let (x0, x1, y0, y1) = (left, w - right, top, ht - bottom);
    let (nx, ny) = (h.x_ticks.len() as i32, h.y_ticks.len() as i32);
    let cw = (x1 - x0) as f64 / nx as f64;
    let ch = (y1 - y0) as f64 / ny as f64;
    let cell_px = (0.22 * cw.min(ch)).clamp(12.0, 30.0);
    // Cells, the first y value at the bottom.
    for (j, row) in h.values.iter().enumerate() {
        for (i, &v) in row.iter().enumerate() {
            let cx0 = x0 + (i as f64 * cw).round() as i32;
            let cx1 = x0 + ((i + 1) as f64 * cw).round() as i32;
            let cy1 = y1 - (j as f64 * ch).round() as i32;
            let cy0 = y1 - ((j + 1) as f64 * ch).round() as i32;
            let t = (if h.log { v.log10() } else { v } - lo) / (hi - lo);
            let fill = if v.is_finite() {
                viridis(t)
            } else {
                RGBColor(225, 225, 225)
            };
            root.draw(&Rectangle::new([(cx0, cy0), (cx1, cy1)], fill.filled()))?;
            root.draw(&Rectangle::new(
                [(cx0, cy0), (cx1, cy1)],
                ShapeStyle::from(&WHITE).stroke_width(2),
            ))?;
            let dark = v.is_finite() && t.clamp(0.0, 1.0) < 0.6;
            let colour = if dark {
                WHITE
            } else if v.is_finite() {
                BLACK
            } else {
                MARKER_GREY
            };
            let style = font(cell_px)
                .color(&colour)
                .pos(Pos::new(HPos::Center, VPos::Center));
            let note = h
                .notes
                .get(j)
                .and_then(|r| r.get(i))
                .filter(|n| !n.is_empty());
            let text = match note {
                Some(n) if !v.is_finite() => n.clone(),
                _ => cell_text(v),
            };
            text_at(
                root,
                &text,
                &style,
                (
                    (cx0 + cx1) / 2,
                    (cy0 + cy1) / 2 + fix.dy(cell_px, VPos::Center),
                ),
            )?;
        }
    }
    let frame = ShapeStyle::from(&FRAME).stroke_width(2);
    root.draw(&Rectangle::new([(x0, y0), (x1, y1)], frame))?;
    // Tick marks and labels at the cell centres.
    let below = tick.clone().pos(Pos::new(HPos::Center, VPos::Top));
    for (i, label) in h.x_ticks.iter().enumerate() {
        let cx = x0 + ((i as f64 + 0.5) * cw).round() as i32;
        root.draw(&PathElement::new(
            vec![(cx, y1), (cx, y1 + TICK_MARK)],
            frame,
        ))?;
        let label = fit_text(root, label, &below, cw as i32 - 4)?;
        text_at(
            root,
            &label,
            &below,
            (cx, y1 + TICK_MARK + 6 + fix.dy(TICK_PX, VPos::Top)),
        )?;
    }
    let beside = tick.clone().pos(Pos::new(HPos::Right, VPos::Center));
    for (j, label) in h.y_ticks.iter().enumerate() {
        let cy = y1 - ((j as f64 + 0.5) * ch).round() as i32;
        root.draw(&PathElement::new(
            vec![(x0 - TICK_MARK, cy), (x0, cy)],
            frame,
        ))?;
        text_at(
            root,
            label,
            &beside,
            (x0 - TICK_MARK - 6, cy + fix.dy(TICK_PX, VPos::Center)),
        )?;
    }
    // Axis labels.
    let desc = font(DESC_PX);
    let x_desc = desc.clone().pos(Pos::new(HPos::Center, VPos::Bottom));
    let x_text = fit_text(root, &h.x_label, &x_desc, x1 - x0)?;
    text_at(root, &x_text, &x_desc, ((x0 + x1) / 2, ht - 14))?;
    let y_desc = desc
        .clone()
        .transform(FontTransform::Rotate270)
        .pos(Pos::new(HPos::Center, VPos::Top));
    text_at(root, &h.y_label, &y_desc, (14, (y0 + y1) / 2))?;
    // Colour bar: 1-pixel rows from lo (bottom) to hi (top).
    let (bx0, bx1) = (x1 + BAR_GAP, x1 + BAR_GAP + BAR_W);
    for y in y0..y1 {
        let t = (y1 - y) as f64 / (y1 - y0) as f64;
        root.draw(&Rectangle::new(
            [(bx0, y), (bx1, y + 1)],
            viridis(t).filled(),
        ))?;
    }
    root.draw(&Rectangle::new([(bx0, y0), (bx1, y1)], frame))?;
    let bar_style = tick.clone().pos(Pos::new(HPos::Left, VPos::Center));
    for (t, label) in bar_ticks.iter().zip(&bar_labels) {
        let y = y1 - (((t - lo) / (hi - lo)) * (y1 - y0) as f64).round() as i32;
        root.draw(&PathElement::new(
            vec![(bx1, y), (bx1 + TICK_MARK, y)],
            frame,
        ))?;
        text_at(
            root,
            label,
            &bar_style,
            (bx1 + TICK_MARK + 6, y + fix.dy(TICK_PX, VPos::Center)),
        )?;
    }
    let bar_desc = desc
        .transform(FontTransform::Rotate270)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    text_at(root, &h.value_label, &bar_desc, (w - 12, (y0 + y1) / 2))?;
    Ok(())
}
