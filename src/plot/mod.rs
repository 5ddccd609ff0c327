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
//!
//! Public items live in the files by concern and are re-exported here (`lcsim::plot::X`):
//! format (FigureFormat, no plotters types), run figures, trajectories, feature maps, panels across
//! runs, sweep figures; the private files hold the shared primitives (axes, figure description, style,
//! drawing, rendering).

mod axis;
mod draw;
mod feature_maps;
mod figure;
mod panels;
mod render;
mod run_figures;
mod style;
mod sweep_figures;
mod trajectories;

pub use crate::io::figure_format::FigureFormat;
pub use feature_maps::{
    feature_maps, feature_maps_size, ColourScale, FeatureMapFigure, FeatureMapRow,
    MAX_FEATURE_MAP_COLUMNS,
};
pub use figure::Series;
pub use panels::{
    control_magnitude_panels, line_panels, line_panels_each_x, Curve, CurveStyle, LinePanel,
    YScale, GRID_PANEL_SIZE, LINE_PANEL_SIZE,
};
pub use run_figures::{
    control_magnitude, feedback_alignment, learning_curves, solver_statistics, stability,
    ABSCISSA_LABEL, ACCURACY_LABEL, EPOCH_LABEL, H_LABEL, LOSS_LABEL, ONE_PANEL_SIZE, STEPS_LABEL,
    TWO_PANEL_SIZE, UNCONVERGED_LABEL,
};
pub use sweep_figures::{heatmap, parameter_lines, Heatmap, SWEEP_FIGURE_SIZE};
pub use trajectories::{trajectories, trajectories_size, TrajectoryPanel, TIME_LABEL};
