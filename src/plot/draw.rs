//! Drawing a [`Figure`] of panels: layout, axes, curves, markers, captions, legends.

use super::axis::Axis;
use super::figure::{Figure, Layout, Line, Panel};
use super::render::{DResult, Drawable};
use super::style::{
    fit_text, font, max_text_width, text_at, TextFix, CAPTION_PX, DESC_PX, FRAME, GRID, LEGEND_PX,
    LINE_WIDTH, MARKER_GREY, MARKER_RADIUS, MINOR_GRID, TICK_MARK, TICK_PX, TITLE_HEIGHT, TITLE_PX,
    X_AXIS_HEIGHT,
};
use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

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
