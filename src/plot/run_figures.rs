//! Figures of one training run, drawn from its metrics.csv: learning curves, control
//! magnitude H, feedback alignment, solver statistics and the basin and stability
//! diagnostics.

use super::axis::Axis;
use super::figure::{Figure, Layout, Line, Panel};
use super::render::render;
use super::style::OKABE_ITO;
use crate::error::{invalid, Result};
use crate::io::figure_format::FigureFormat;
use crate::io::metrics::EpochMetrics;
use std::path::Path;

/// Size in pixels (width, height) of the two-panel figures [`learning_curves`] and
/// [`solver_statistics`].
pub const TWO_PANEL_SIZE: (u32, u32) = (1600, 900);

/// Size in pixels (width, height) of the single-panel figure [`control_magnitude`].
pub const ONE_PANEL_SIZE: (u32, u32) = (1200, 800);

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

/// Two panels side by side, x = epoch: the mean loss (left) and the accuracy (right), each
/// for the training batches (line) and the test split (line with a marker at every evaluated
/// epoch; epochs without evaluation, NaN, are skipped). Written with size [`TWO_PANEL_SIZE`];
/// when losses are measured but no accuracy ever is (regression, meta-learning's query loss),
/// the loss panel alone, with size [`ONE_PANEL_SIZE`].
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
    let no_accuracy = is_regression(&rows);
    let loss_label = loss_label(&rows);
    let mut panels = vec![Panel::new(
        x.clone(),
        EPOCH_LABEL,
        loss_label,
        loss_lines,
        None,
    )];
    if !no_accuracy {
        panels.push(Panel::new(x, EPOCH_LABEL, ACCURACY_LABEL, acc_lines, None));
    }
    let fig = Figure {
        size: if no_accuracy {
            ONE_PANEL_SIZE
        } else {
            TWO_PANEL_SIZE
        },
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

/// True for a regression loss (meta-learning's query loss): losses measured, never an
/// accuracy.
fn is_regression(rows: &[EpochMetrics]) -> bool {
    rows.iter()
        .all(|r| r.train_accuracy.is_nan() && r.test_accuracy.is_nan())
        && rows.iter().any(|r| r.train_loss.is_finite())
}

/// The loss axis label: [`LOSS_LABEL`], or "mean loss" for a regression loss.
fn loss_label(rows: &[EpochMetrics]) -> &'static str {
    if is_regression(rows) {
        "mean loss"
    } else {
        LOSS_LABEL
    }
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
pub(super) fn all_h_positive(rows: &[EpochMetrics]) -> bool {
    rows.iter()
        .map(|r| r.mean_h)
        .filter(|v| v.is_finite())
        .all(|v| v > 0.0)
}

/// The panel of [`control_magnitude`] for rows sorted by epoch: mean H on the left axis
/// (log10 when `log`), the test loss (the training loss if the test split was never
/// evaluated) dashed with markers on the right axis.
pub(super) fn h_and_loss_panel(rows: &[EpochMetrics], log: bool, caption: Option<String>) -> Panel {
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
        panel.y2_desc = format!("{loss_name} {}", loss_label(rows));
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

/// Axis label of the spectral abscissa axis.
pub const ABSCISSA_LABEL: &str = "max Re λ of the free Jacobian at φ0";

/// The basin and stability diagnostics over training (spec 2.1, 2.2), two panels side by side,
/// x = epoch. Left: the fraction of the diagnostics batch whose controlled equilibrium left
/// phi0's basin (basin switches), the fraction of its free solves that converged, and the
/// cosine between the update and the negative RBP gradient (LCP methods). Right: the
/// largest real part of the free Jacobian's spectrum at phi0 over the batch, with the
/// stability boundary 0 dashed (above it a free equilibrium is unstable). Written with
/// size [`TWO_PANEL_SIZE`].
///
/// Returns `Ok(false)` and writes nothing when no epoch has diagnostics (they were off,
/// `training.diagnostics_samples = 0`, or the table predates them), `Ok(true)` when the
/// figure was written.
///
/// Errors: the file cannot be written ([`LcsimError::Io`] naming `path`).
pub fn stability(
    rows: &[EpochMetrics],
    title: &str,
    path: &Path,
    format: FigureFormat,
) -> Result<bool> {
    if !rows
        .iter()
        .any(|r| r.diagnostics.fraction_free_converged.is_finite())
    {
        return Ok(false);
    }
    let rows = sorted_rows(rows, "rows")?;
    let epochs: Vec<f64> = rows.iter().map(|r| r.epoch as f64).collect();
    let x = Axis::epochs(&epochs);
    let col = |f: fn(&EpochMetrics) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    let switches = col(|r| r.diagnostics.fraction_basin_switch);
    let converged = col(|r| r.diagnostics.fraction_free_converged);
    let cosine = col(|r| r.diagnostics.alignment_cosine);
    let mut converged_line =
        Line::new("free solves converged", OKABE_ITO[1], &epochs, &converged).markers();
    converged_line.dashed = true;
    let mut cosine_line = Line::new("cos(Δθ, −∇L(φ0))", OKABE_ITO[2], &epochs, &cosine).markers();
    cosine_line.square = true;
    let left_lines = vec![
        Line::new("basin switches", OKABE_ITO[0], &epochs, &switches).markers(),
        converged_line,
        cosine_line,
    ];
    let all: Vec<f64> = switches
        .iter()
        .chain(&converged)
        .chain(&cosine)
        .copied()
        .chain([0.0, 1.0])
        .collect();
    let mut left = Panel::new(
        x.clone(),
        EPOCH_LABEL,
        "fraction of the diagnostics batch / cosine",
        left_lines,
        None,
    );
    left.y = Axis::linear(&all, 6);
    let abscissa = col(|r| r.diagnostics.free_spectral_abscissa);
    let mut boundary = Line::new(
        "stability boundary",
        OKABE_ITO[4],
        &epochs,
        &vec![0.0; epochs.len()],
    );
    boundary.dashed = true;
    let right_lines = vec![
        Line::new("spectral abscissa", OKABE_ITO[0], &epochs, &abscissa).markers(),
        boundary,
    ];
    let mut right = Panel::new(x, EPOCH_LABEL, ABSCISSA_LABEL, right_lines, None);
    right.y = Axis::linear(
        &abscissa.iter().copied().chain([0.0]).collect::<Vec<_>>(),
        6,
    );
    let fig = Figure {
        size: TWO_PANEL_SIZE,
        title: title.to_string(),
        panels: vec![left, right],
        layout: Layout::Row,
        marker: None,
    };
    render(&fig, path, format)?;
    Ok(true)
}

/// The rows sorted by epoch; error when there are none.
pub(super) fn sorted_rows(rows: &[EpochMetrics], field: &str) -> Result<Vec<EpochMetrics>> {
    if rows.is_empty() {
        return Err(invalid(field, "no epochs", "at least one epoch"));
    }
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| r.epoch);
    Ok(rows)
}
