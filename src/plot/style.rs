//! Look of every figure: palette, font (bundled DejaVu Sans), text sizes, line widths,
//! fixed heights, and text measuring and placement.

use super::render::DResult;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::VPos;
use plotters::style::{register_font, FontStyle};
use std::sync::OnceLock;

/// Height of the shared time axis (tick labels and axis label) below the last panel.
pub(super) const X_AXIS_HEIGHT: u32 = 90;

/// Height of the figure title band.
pub(super) const TITLE_HEIGHT: u32 = 64;

/// Okabe & Ito (2008) colour-blind safe palette, yellow last (weak on white).
pub(super) const OKABE_ITO: [RGBColor; 8] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(230, 159, 0),   // orange
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
    RGBColor(240, 228, 66),  // yellow
];

pub(super) const GRID: RGBColor = RGBColor(222, 222, 222);

pub(super) const MINOR_GRID: RGBColor = RGBColor(242, 242, 242);

pub(super) const FRAME: RGBColor = RGBColor(40, 40, 40);

pub(super) const MARKER_GREY: RGBColor = RGBColor(100, 100, 100);

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
pub(super) fn viridis(t: f64) -> RGBColor {
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

/// A diverging blue - white - red scale at t in [0, 1] (clamped; white at 0.5): signed
/// values such as differences, symmetric about zero.
pub(super) fn blue_white_red(t: f64) -> RGBColor {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let (end, f) = if t < 0.5 {
        ((33.0, 102.0, 172.0), 1.0 - 2.0 * t)
    } else {
        ((178.0, 24.0, 43.0), 2.0 * t - 1.0)
    };
    let mix = |e: f64| (255.0 + f * (e - 255.0)).round() as u8;
    RGBColor(mix(end.0), mix(end.1), mix(end.2))
}

/// Font family: DejaVu Sans where the SVG viewer has it (metrics then match the layout),
/// the generic sans-serif otherwise; the bitmap renderer uses the bundled font for both.
const FONT: &str = "DejaVu Sans, sans-serif";

pub(super) const TITLE_PX: f64 = 32.0;

pub(super) const CAPTION_PX: f64 = 26.0;

pub(super) const DESC_PX: f64 = 28.0;

pub(super) const TICK_PX: f64 = 22.0;

pub(super) const LEGEND_PX: f64 = 22.0;

pub(super) const LINE_WIDTH: u32 = 3;

pub(super) const MARKER_RADIUS: i32 = 6;

pub(super) const TICK_MARK: i32 = 8;

static FONT_BYTES: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Registers the bundled font under [`FONT`] and as `sans-serif` (once per process).
pub(super) fn ensure_font() -> std::result::Result<(), String> {
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

pub(super) fn font(px: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, px).into_font()).color(&BLACK)
}

/// Widest rendered text of `texts` in pixels.
pub(super) fn max_text_width<DB: DrawingBackend>(
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
pub(super) struct TextFix {
    /// Downward shift of vertically centred text, in font sizes.
    pub(super) center: f64,
    /// Downward shift of top-anchored text, in font sizes.
    pub(super) top: f64,
}

impl TextFix {
    pub(super) const BITMAP: TextFix = TextFix {
        center: 0.216,
        top: 0.126,
    };
    pub(super) const NONE: TextFix = TextFix {
        center: 0.0,
        top: 0.0,
    };

    pub(super) fn dy(self, px: f64, v: VPos) -> i32 {
        let f = match v {
            VPos::Center => self.center,
            VPos::Top => self.top,
            VPos::Bottom => 0.0,
        };
        (f * px).round() as i32
    }
}

/// Draws text at absolute pixel coordinates (`DrawingArea::draw_text` is relative to the
/// area's corner whatever its coordinate system).
pub(super) fn text_at<DB: DrawingBackend>(
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
pub(super) fn fit_text<DB: DrawingBackend>(
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
