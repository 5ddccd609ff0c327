//! Figures of a parameter sweep: a metric against one parameter (lines) and over two
//! (heatmap with a viridis colour bar).

use super::axis::{finite_range, linear_labels, nice_step, padded, power_of_ten, ticks_in};
use super::figure::{Figure, Layout, Series};
use super::panels::{build_line_panel, Curve, CurveStyle, LinePanel, YScale};
use super::render::{render, DResult, Drawable};
use super::style::{
    fit_text, font, max_text_width, text_at, viridis, TextFix, DESC_PX, FRAME, MARKER_GREY,
    OKABE_ITO, TICK_MARK, TICK_PX, TITLE_HEIGHT, TITLE_PX,
};
use crate::error::{invalid, LcsimError, Result};
use crate::io::figure_format::FigureFormat;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;
use std::path::Path;

/// Size in pixels (width, height) of [`parameter_lines`] and [`heatmap`] figures.
pub const SWEEP_FIGURE_SIZE: (u32, u32) = (1200, 900);

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
                smooth: false,
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
