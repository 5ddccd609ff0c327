//! The figures of `lcsim simulate`: one figure of time courses per sample and, for conv systems,
//! the feature maps of each layer at the switch-on time and at t_end.

use super::simulate::Simulation;
use super::simulate::SplitChoice;
use crate::error::{io_error, Result};
use crate::plot::{
    feature_maps, trajectories, ColourScale, FeatureMapFigure, FeatureMapRow, FigureFormat, Series,
    TrajectoryPanel,
};
use nalgebra::DMatrix;
use std::path::{Path, PathBuf};

/// One figure per sample in `dir` (created): the hidden units `units`, all
/// output units, the control magnitudes |psi|, |e|, |u| and the loss against time, with
/// t_on marked. Returns the paths.
pub fn draw_simulation_figures(
    dir: &Path,
    sim: &Simulation,
    name: &str,
    split: SplitChoice,
    units: &[usize],
    format: FigureFormat,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let mut paths = Vec::new();
    for ((tr, &sample), &label) in sim.trajectories.iter().zip(&sim.samples).zip(&sim.labels) {
        let (n_h, n_y) = (tr.v.nrows(), tr.y.nrows());
        let row = |m: &DMatrix<f64>, i: usize| m.row(i).iter().copied().collect::<Vec<_>>();
        let hidden: Vec<Series> = units
            .iter()
            .filter(|&&i| i < n_h)
            .map(|&i| Series::new(format!("v{}", subscript(i)), row(&tr.v, i)))
            .collect();
        let which = match units {
            [first, ..] if units.iter().zip(*first..).all(|(u, k)| *u == k) && *first == 0 => {
                format!("first {} of {n_h}", hidden.len())
            }
            _ => format!("{} chosen of {n_h}", hidden.len()),
        };
        let outputs: Vec<Series> = (0..n_y)
            .map(|i| {
                let mark = if i == label { " (label)" } else { "" };
                Series::new(format!("y{}{mark}", subscript(i)), row(&tr.y, i))
            })
            .collect();
        let panels: Vec<TrajectoryPanel> = vec![
            (format!("hidden units ({which})"), "v".into(), hidden),
            (format!("output units (label {label})"), "y".into(), outputs),
            (
                "control magnitudes".into(),
                "L2 norm".into(),
                vec![
                    Series::new("|ψ|", tr.psi_norm.clone()),
                    Series::new("|e|", tr.e_norm.clone()),
                    Series::new("|u|", tr.u_norm.clone()),
                ],
            ),
            (
                format!("loss L(y(t)) ({})", sim.loss.name()),
                "L".into(),
                vec![Series::new("L", tr.loss.clone())],
            ),
        ];
        let path = dir.join(format!("sample-{sample}.{}", format.extension()));
        let title = format!("{name}: {} sample {sample}", split.name());
        trajectories(
            &sim.times,
            &panels,
            Some((sim.t_on, "control on")),
            &title,
            &path,
            format,
        )?;
        paths.push(path);
    }
    Ok(paths)
}

/// Channels of a layer drawn by [`draw_feature_map_figures`] (the first ones).
pub const DRAWN_CHANNELS: usize = 8;

/// One figure per sample and feature-map layer of `sim.feature_maps` in `dir`: the first
/// [`DRAWN_CHANNELS`] channels at the switch-on time t_on (the free state reached; left out
/// when t_on = 0), at t_end (controlled) and their difference (controlled - free), the two
/// states on one colour scale. File `sample-<i>-<layer>-maps.<ext>`. Returns the paths.
pub fn draw_feature_map_figures(
    dir: &Path,
    sim: &Simulation,
    name: &str,
    format: FigureFormat,
) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    if sim.feature_maps.is_empty() {
        return Ok(paths);
    }
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let last = sim.times.len() - 1;
    let free_at = (sim.switch_index > 0).then_some(sim.switch_index.min(last));
    for (tr, &sample) in sim.trajectories.iter().zip(&sim.samples) {
        for layout in &sim.feature_maps {
            let channels = layout.channels.min(DRAWN_CHANNELS);
            let plane = layout.height * layout.width;
            // Channel c of the maps in v's column t.
            let maps = |t: usize| -> Vec<Vec<f64>> {
                let col = tr.v.column(t);
                (0..channels)
                    .map(|c| {
                        let start = layout.rows.start + c * plane;
                        col.rows(start, plane).iter().copied().collect()
                    })
                    .collect()
            };
            let controlled = maps(last);
            let controlled_caption =
                format!("controlled: {} at t = {}", layout.name, sim.times[last]);
            let rows = match free_at {
                Some(t) => {
                    let free = maps(t);
                    let diff: Vec<Vec<f64>> = controlled
                        .iter()
                        .zip(&free)
                        .map(|(a, b)| a.iter().zip(b).map(|(a, b)| a - b).collect())
                        .collect();
                    let states =
                        ColourScale::sequential_over(free.iter().chain(&controlled).flatten());
                    let diff_scale = ColourScale::diverging_over(diff.iter().flatten());
                    vec![
                        FeatureMapRow {
                            caption: format!(
                                "free: {} at t = {} (control switched on)",
                                layout.name, sim.times[t]
                            ),
                            maps: free,
                            scale: states,
                        },
                        FeatureMapRow {
                            caption: controlled_caption,
                            maps: controlled,
                            scale: states,
                        },
                        FeatureMapRow {
                            caption: "controlled − free".into(),
                            maps: diff,
                            scale: diff_scale,
                        },
                    ]
                }
                None => vec![FeatureMapRow {
                    caption: controlled_caption,
                    scale: ColourScale::sequential_over(controlled.iter().flatten()),
                    maps: controlled,
                }],
            };
            let fig = FeatureMapFigure {
                title: format!(
                    "{name}: sample {sample}, {} ({} of {} channels, {} x {})",
                    layout.name, channels, layout.channels, layout.height, layout.width
                ),
                height: layout.height,
                width: layout.width,
                columns: (0..channels).map(|c| format!("channel {c}")).collect(),
                rows,
            };
            let path = dir.join(format!(
                "sample-{sample}-{}-maps.{}",
                layout.name,
                format.extension()
            ));
            feature_maps(&fig, &path, format)?;
            paths.push(path);
        }
    }
    Ok(paths)
}

/// `12` -> `₁₂`.
fn subscript(i: usize) -> String {
    i.to_string()
        .chars()
        .map(|c| char::from_u32(0x2080 + c.to_digit(10).unwrap_or(0)).unwrap_or(c))
        .collect()
}
