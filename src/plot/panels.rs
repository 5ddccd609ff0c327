//! Multi-panel figures across runs or variants: the grid of H/loss panels (`lcsim compare`)
//! and line panels against a common x (`lcsim align`).

use super::axis::Axis;
use super::figure::{Figure, Layout, Line, Panel, Series};
use super::render::render;
use super::run_figures::{all_h_positive, h_and_loss_panel, sorted_rows};
use super::style::{OKABE_ITO, TITLE_HEIGHT};
use crate::error::{invalid, LcsimError, Result};
use crate::io::figure_format::FigureFormat;
use crate::io::metrics::EpochMetrics;
use std::path::Path;

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
    /// A line without markers (a densely sampled curve).
    pub smooth: bool,
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

/// [`line_panels`] with an x axis of its own for each panel (linear): `(panel, x label)`,
/// e.g. a function of x beside time courses. Same size, layout and errors.
pub fn line_panels_each_x(
    panels: &[(LinePanel, String)],
    title: &str,
    path: &Path,
    format: FigureFormat,
) -> Result<()> {
    if panels.is_empty() || panels.len() > 8 {
        return Err(invalid("panels", panels.len(), "1 to 8 panels"));
    }
    let mut out = Vec::with_capacity(panels.len());
    for (p, x_label) in panels {
        out.push(build_line_panel(p, x_label, false)?);
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
pub(super) fn build_line_panel(p: &LinePanel, x_label: &str, log_x: bool) -> Result<Panel> {
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
        let mut l = Line::new(&s.label, color, &xs, &ys);
        if !c.style.smooth {
            l = l.markers();
        }
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
