//! The backend-independent description of a figure: series, lines, panels, layout.

use super::axis::Axis;
use plotters::prelude::*;

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

/// A curve: finite points only.
#[derive(Clone, Debug)]
pub(super) struct Line {
    pub(super) label: String,
    pub(super) color: RGBColor,
    pub(super) dashed: bool,
    pub(super) markers: bool,
    /// Square instead of round markers.
    pub(super) square: bool,
    /// Drawn against the right (secondary) y axis.
    pub(super) right: bool,
    /// Markers only, no connecting line (a scatter).
    pub(super) points_only: bool,
    pub(super) points: Vec<(f64, f64)>,
}

impl Line {
    pub(super) fn new(label: &str, color: RGBColor, xs: &[f64], ys: &[f64]) -> Line {
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

    pub(super) fn markers(mut self) -> Line {
        self.markers = true;
        self
    }

    /// Markers are drawn when asked for, and always for a lone point (a line through one
    /// point is invisible).
    pub(super) fn draws_markers(&self) -> bool {
        self.markers || self.points_only || self.points.len() == 1
    }
}

#[derive(Clone, Debug)]
pub(super) struct Panel {
    pub(super) caption: Option<String>,
    pub(super) x: Axis,
    pub(super) y: Axis,
    pub(super) y2: Option<Axis>,
    pub(super) x_desc: String,
    pub(super) y_desc: String,
    pub(super) y2_desc: String,
    pub(super) lines: Vec<Line>,
    /// Draw this panel's legend.
    pub(super) legend: bool,
}

impl Panel {
    pub(super) fn new(
        x: Axis,
        x_desc: &str,
        y_desc: &str,
        lines: Vec<Line>,
        caption: Option<String>,
    ) -> Self {
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

    pub(super) fn visible_lines(&self) -> impl Iterator<Item = &Line> {
        self.lines.iter().filter(|l| !l.points.is_empty())
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Layout {
    /// Panels side by side, each with its own axes and a legend inside.
    Row,
    /// Panels stacked on a shared x axis, legends to the right of the panels.
    Column,
    /// Panels in a grid of this many columns, filled row by row, each as in `Row`.
    Grid(usize),
}

#[derive(Clone, Debug)]
pub(super) struct Figure {
    pub(super) size: (u32, u32),
    pub(super) title: String,
    pub(super) panels: Vec<Panel>,
    pub(super) layout: Layout,
    /// Vertical marker line (x, label) drawn through all panels.
    pub(super) marker: Option<(f64, String)>,
}
