//! Time courses of one simulation (`lcsim simulate`): panels stacked on a shared time axis.

use super::axis::Axis;
use super::figure::{Figure, Layout, Line, Panel, Series};
use super::render::render;
use super::style::{OKABE_ITO, TITLE_HEIGHT, X_AXIS_HEIGHT};
use crate::error::{invalid, LcsimError, Result};
use crate::io::figure_format::FigureFormat;
use std::path::Path;

/// Width of the figure written by [`trajectories`].
const TRAJECTORY_WIDTH: u32 = 1600;

/// Height of one stacked panel of [`trajectories`] (caption and plot).
const TRAJECTORY_PANEL_HEIGHT: u32 = 330;

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

/// One panel of [`trajectories`]: (caption, y-axis label, series).
pub type TrajectoryPanel = (String, String, Vec<Series>);

/// Axis label of the shared time axis of [`trajectories`].
pub const TIME_LABEL: &str = "time (units of τᵥ)";

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
