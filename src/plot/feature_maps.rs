//! Feature maps of one image side by side: e.g. a conv system's free and controlled
//! equilibrium maps and their difference (`lcsim simulate` on `model.kind = "conv" | "deq"`).

use super::axis::finite_range;
use super::render::{render, DResult, Drawable};
use super::style::{
    blue_white_red, fit_text, font, max_text_width, text_at, viridis, TextFix, CAPTION_PX, FRAME,
    TICK_PX, TITLE_HEIGHT, TITLE_PX,
};
use crate::error::{invalid, LcsimError, Result};
use crate::io::figure_format::FigureFormat;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Width of a [`feature_maps`] figure.
const FEATURE_MAP_WIDTH: u32 = 1600;

/// Most maps (columns) in one row.
pub const MAX_FEATURE_MAP_COLUMNS: usize = 12;

/// How the values of a row map to colours.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ColourScale {
    /// Viridis from `lo` to `hi` (lo < hi).
    Sequential { lo: f64, hi: f64 },
    /// Blue - white - red over `-max_abs..max_abs` (max_abs > 0), white at 0.
    Diverging { max_abs: f64 },
}

impl ColourScale {
    /// Viridis over the finite range of `values`, padded when they are all equal.
    pub fn sequential_over<'a>(values: impl IntoIterator<Item = &'a f64>) -> ColourScale {
        let values: Vec<f64> = values.into_iter().copied().collect();
        match finite_range(&values) {
            Some((lo, hi)) if lo < hi => ColourScale::Sequential { lo, hi },
            Some((v, _)) => ColourScale::Sequential {
                lo: v - 0.5,
                hi: v + 0.5,
            },
            None => ColourScale::Sequential { lo: 0.0, hi: 1.0 },
        }
    }
    /// Blue - white - red symmetric about 0 over the largest finite |value| (1 if all are 0).
    pub fn diverging_over<'a>(values: impl IntoIterator<Item = &'a f64>) -> ColourScale {
        let m = values
            .into_iter()
            .filter(|v| v.is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        ColourScale::Diverging {
            max_abs: if m > 0.0 { m } else { 1.0 },
        }
    }
    fn limits(self) -> (f64, f64) {
        match self {
            ColourScale::Sequential { lo, hi } => (lo, hi),
            ColourScale::Diverging { max_abs } => (-max_abs, max_abs),
        }
    }
    fn colour(self, v: f64) -> RGBColor {
        let (lo, hi) = self.limits();
        let t = (v - lo) / (hi - lo);
        match self {
            ColourScale::Sequential { .. } => viridis(t),
            ColourScale::Diverging { .. } => blue_white_red(t),
        }
    }
}

/// One row of a [`FeatureMapFigure`]: a caption, one map per column (`height x width` values,
/// row-major) and its colour scale.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureMapRow {
    pub caption: String,
    pub maps: Vec<Vec<f64>>,
    pub scale: ColourScale,
}

/// Rows of feature maps with shared column labels (e.g. channels).
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureMapFigure {
    pub title: String,
    /// Size of every map.
    pub height: usize,
    pub width: usize,
    /// One label per column.
    pub columns: Vec<String>,
    pub rows: Vec<FeatureMapRow>,
}

/// Layout in pixels: (side of one map's cell, height of one row with its caption).
fn cell_and_row(columns: usize) -> (i32, i32) {
    let usable = FEATURE_MAP_WIDTH as i32 - LEFT - RIGHT;
    let cell = (usable / columns.max(1) as i32 - GAP).clamp(40, 260);
    (cell, cell + CAPTION_BAND)
}

const LEFT: i32 = 30;
const RIGHT: i32 = 190;
const GAP: i32 = 12;
const CAPTION_BAND: i32 = 44;
const COLUMN_BAND: i32 = 34;

/// Size in pixels (width, height) of [`feature_maps`] with `rows` rows of `columns` maps.
pub fn feature_maps_size(rows: usize, columns: usize) -> (u32, u32) {
    let (_, row) = cell_and_row(columns);
    let h = TITLE_HEIGHT as i32 + COLUMN_BAND + rows as i32 * (row + GAP) + 20;
    (FEATURE_MAP_WIDTH, h as u32)
}

/// Draws the rows of maps: each map as `height x width` coloured squares by its row's
/// [`ColourScale`] (NaN grey), the row's caption above it, the column labels above the first
/// row, and a colour bar with its limits right of every row. Written with size
/// [`feature_maps_size`].
///
/// Errors: no rows or columns, more than [`MAX_FEATURE_MAP_COLUMNS`] columns, a row with
/// another number of maps or a map with another number of values, an empty map, or an
/// invalid colour scale ([`LcsimError::InvalidValue`] / [`LcsimError::Shape`]); the file
/// cannot be written ([`LcsimError::Io`] naming `path`).
pub fn feature_maps(fig: &FeatureMapFigure, path: &Path, format: FigureFormat) -> Result<()> {
    let n = fig.columns.len();
    if fig.rows.is_empty() || n == 0 {
        return Err(invalid(
            "feature maps",
            "no rows or columns",
            "at least one row of one map",
        ));
    }
    if n > MAX_FEATURE_MAP_COLUMNS {
        return Err(invalid("feature map columns", n, "at most 12 maps per row"));
    }
    if fig.height == 0 || fig.width == 0 {
        return Err(invalid(
            "feature map size",
            format!("{} x {}", fig.height, fig.width),
            "positive height and width",
        ));
    }
    for row in &fig.rows {
        let len = fig.height * fig.width;
        if row.maps.len() != n || row.maps.iter().any(|m| m.len() != len) {
            return Err(LcsimError::Shape {
                field: format!("feature maps of row \"{}\"", row.caption),
                expected: format!("{n} maps of {len} values"),
                found: format!("{:?}", row.maps.iter().map(Vec::len).collect::<Vec<_>>()),
            });
        }
        let (lo, hi) = row.scale.limits();
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return Err(invalid(
                "feature map colour scale",
                format!("{lo}..{hi}"),
                "finite limits lo < hi",
            ));
        }
    }
    render(fig, path, format)
}

impl Drawable for FeatureMapFigure {
    fn size(&self) -> (u32, u32) {
        feature_maps_size(self.rows.len(), self.columns.len())
    }

    fn draw_on<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        fix: TextFix,
    ) -> DResult<()> {
        root.fill(&WHITE)?;
        let (w, _) = root.dim_in_pixel();
        let title_style = font(TITLE_PX).pos(Pos::new(HPos::Center, VPos::Top));
        let title = fit_text(root, &self.title, &title_style, w as i32 - 40)?;
        text_at(
            root,
            &title,
            &title_style,
            (w as i32 / 2, 18 + fix.dy(TITLE_PX, VPos::Top)),
        )?;
        let (cell, row_h) = cell_and_row(self.columns.len());
        let pixel = (cell as f64 / self.height.max(self.width) as f64).max(1.0);
        let (map_w, map_h) = (
            (pixel * self.width as f64).round() as i32,
            (pixel * self.height as f64).round() as i32,
        );
        let tick = font(TICK_PX);
        let above = tick.clone().pos(Pos::new(HPos::Center, VPos::Bottom));
        let mut top = TITLE_HEIGHT as i32 + COLUMN_BAND;
        for (i, label) in self.columns.iter().enumerate() {
            let cx = LEFT + i as i32 * (cell + GAP) + map_w / 2;
            let label = fit_text(root, label, &above, cell + GAP)?;
            text_at(root, &label, &above, (cx, top - 6))?;
        }
        let caption = font(CAPTION_PX).pos(Pos::new(HPos::Left, VPos::Top));
        let frame = ShapeStyle::from(&FRAME).stroke_width(1);
        for row in &self.rows {
            let text = fit_text(root, &row.caption, &caption, w as i32 - LEFT - 20)?;
            text_at(
                root,
                &text,
                &caption,
                (LEFT, top + 4 + fix.dy(CAPTION_PX, VPos::Top)),
            )?;
            let y0 = top + CAPTION_BAND;
            for (i, map) in row.maps.iter().enumerate() {
                let x0 = LEFT + i as i32 * (cell + GAP);
                for (k, &v) in map.iter().enumerate() {
                    let (r, c) = (k / self.width, k % self.width);
                    let px0 = x0 + (c as f64 * pixel).round() as i32;
                    let py0 = y0 + (r as f64 * pixel).round() as i32;
                    let px1 = x0 + ((c + 1) as f64 * pixel).round() as i32;
                    let py1 = y0 + ((r + 1) as f64 * pixel).round() as i32;
                    let fill = if v.is_finite() {
                        row.scale.colour(v)
                    } else {
                        RGBColor(225, 225, 225)
                    };
                    root.draw(&Rectangle::new([(px0, py0), (px1, py1)], fill.filled()))?;
                }
                root.draw(&Rectangle::new([(x0, y0), (x0 + map_w, y0 + map_h)], frame))?;
            }
            // The row's colour bar: 1-pixel rows from lo (bottom) to hi (top).
            let (lo, hi) = row.scale.limits();
            let bx0 = FEATURE_MAP_WIDTH as i32 - RIGHT + 20;
            let (by0, by1) = (y0, y0 + map_h.max(40));
            for y in by0..by1 {
                let v = lo + (hi - lo) * (by1 - y) as f64 / (by1 - by0) as f64;
                root.draw(&Rectangle::new(
                    [(bx0, y), (bx0 + 24, y + 1)],
                    row.scale.colour(v).filled(),
                ))?;
            }
            root.draw(&Rectangle::new([(bx0, by0), (bx0 + 24, by1)], frame))?;
            let beside = tick.clone().pos(Pos::new(HPos::Left, VPos::Center));
            let labels = [(by0, hi), (by1, lo)];
            let room = max_text_width(root, labels.iter().map(|(_, v)| bar_label(*v)), &beside)?;
            for (y, v) in labels {
                let label = fit_text(root, &bar_label(v), &beside, room.min(RIGHT - 50))?;
                text_at(
                    root,
                    &label,
                    &beside,
                    (bx0 + 30, y + fix.dy(TICK_PX, VPos::Center)),
                )?;
            }
            top += row_h + GAP;
        }
        Ok(())
    }
}

/// A colour bar limit with three significant digits.
fn bar_label(v: f64) -> String {
    if v == 0.0 || (v.abs() >= 0.01 && v.abs() < 1000.0) {
        format!("{}", (v * 1000.0).round() / 1000.0)
    } else {
        format!("{v:.2e}")
    }
}
