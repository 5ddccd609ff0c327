//! Meta-learning runs (spec 7.1): the inner problem of `[meta]` with theta drawn from
//! `model.seed`, and the meta-test: the query loss after the inner fine-tuning on each new
//! task's support set, with its 95% interval, for the trained theta, before adaptation
//! (theta itself), and for the initial theta (no meta-learning: fine-tuning from a fixed
//! random theta).

use super::{evaluate_free, mean_ci95, TrainingState};
use crate::config::Config;
use crate::control::LossScale;
use crate::data::Dataset;
use crate::error::Result;
use crate::system::meta::MetaSystem;
use crate::system::EquilibriumSystem;
use nalgebra::DMatrix;
use serde::Serialize;
use std::sync::atomic::AtomicBool;

/// The inner problem of `config` ([meta], learner `1 - model.hidden - 1`) with theta drawn
/// PyTorch-style from `model.seed`.
pub fn meta_system(config: &Config) -> Result<MetaSystem> {
    let learner = config.learner()?;
    let meta = config.meta_settings();
    let theta = learner.initial_params(config.model.seed);
    let theta = DMatrix::from_column_slice(theta.len(), 1, theta.as_slice());
    MetaSystem::new(learner, meta.lambda, config.support_points(), theta)
}

impl TrainingState<MetaSystem> {
    /// A fresh meta-learning state for `config`, for `batches_per_epoch` meta-batches per
    /// epoch.
    pub fn new_meta(config: &Config, batches_per_epoch: usize) -> Result<Self> {
        TrainingState::with_system(meta_system(config)?, config, batches_per_epoch)
    }
}

/// What summary.json reports for a meta-learning run: the mean query loss per task over
/// the meta-test tasks (mean squared error or cross-entropy, named by `loss`) and, for
/// classification, the mean query accuracy, each with the half-width of its normal 95%
/// interval.
#[derive(Clone, Debug, Serialize)]
pub struct MetaTest {
    pub tasks: usize,
    /// The query loss: "query-mse" or "query-cross-entropy".
    pub loss: String,
    /// After the inner fine-tuning from the trained theta.
    pub query_loss: f64,
    pub query_loss_ci95: f64,
    /// Tasks whose inner problem did not converge.
    pub unconverged_tasks: usize,
    /// The trained theta itself, before adaptation.
    pub query_loss_before_adaptation: f64,
    /// After the inner fine-tuning from the initial theta (no meta-learning).
    pub initial_theta_query_loss: f64,
    pub initial_theta_query_loss_ci95: f64,
    /// Classification only: the share of query points classified correctly.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<MetaTestAccuracy>,
}

/// The meta-test accuracies of a classification run (as [`MetaTest`]'s losses).
#[derive(Clone, Debug, Serialize)]
pub struct MetaTestAccuracy {
    pub accuracy: f64,
    pub accuracy_ci95: f64,
    pub accuracy_before_adaptation: f64,
    pub initial_theta_accuracy: f64,
    pub initial_theta_accuracy_ci95: f64,
}

/// The meta-test of `net` (trained theta) on `test`; None when `stop` rose.
pub fn meta_test(
    config: &Config,
    net: &MetaSystem,
    test: &Dataset,
    stop: &AtomicBool,
) -> Result<Option<MetaTest>> {
    let Some(trained) = evaluate_free(config, net, test, stop)? else {
        return Ok(None);
    };
    let Some(initial) = evaluate_free(config, &meta_system(config)?, test, stop)? else {
        return Ok(None);
    };
    let (_, targets) = test.batch(&(0..test.len()).collect::<Vec<_>>());
    let objective = config.objective_scaled(LossScale::PerSample, test.len());
    let theta = net.initial_state(test.len());
    let before = objective.loss.values(&theta, &targets);
    let (query_loss, query_loss_ci95) = mean_ci95(&trained.losses);
    let (initial_theta_query_loss, initial_theta_query_loss_ci95) = mean_ci95(&initial.losses);
    let accuracy = objective.loss.classifies().then(|| {
        let (accuracy, accuracy_ci95) = mean_ci95(&trained.accuracies);
        let (initial_theta_accuracy, initial_theta_accuracy_ci95) = mean_ci95(&initial.accuracies);
        MetaTestAccuracy {
            accuracy,
            accuracy_ci95,
            accuracy_before_adaptation: mean_ci95(&objective.loss.accuracies(&theta, &targets)).0,
            initial_theta_accuracy,
            initial_theta_accuracy_ci95,
        }
    });
    Ok(Some(MetaTest {
        tasks: test.len(),
        loss: objective.loss.name(),
        query_loss,
        query_loss_ci95,
        unconverged_tasks: (trained.fraction_unconverged * test.len() as f64).round() as usize,
        query_loss_before_adaptation: mean_ci95(&before).0,
        initial_theta_query_loss,
        initial_theta_query_loss_ci95,
        accuracy,
    }))
}

/// Test tasks shown by [`adapted_fits_figure`].
pub const FIT_TASKS: usize = 4;

/// The adapted fits of the first [`FIT_TASKS`] meta-test tasks, one panel each: the true
/// curve, the support points, the learner's prediction with theta (before adaptation) and
/// with the inner solution phi* (after), written to `path`.
pub fn adapted_fits_figure(
    config: &Config,
    net: &MetaSystem,
    title: &str,
    path: &std::path::Path,
) -> Result<()> {
    use crate::plot::{line_panels, Curve, CurveStyle, LinePanel, Series, YScale};
    let meta = config.meta_settings();
    let n = FIT_TASKS.min(meta.test_tasks);
    let seed = config.data.seed ^ crate::tasks::TEST_TASK_SEED;
    let (tasks, curves) = crate::tasks::sinusoid_tasks(&meta, n, seed)?;
    let (x, targets) = tasks.batch(&(0..n).collect::<Vec<_>>());
    let objective = config.objective_scaled(LossScale::PerSample, n);
    let free = crate::control::CoupledSystem::new(net, x, targets, objective, 1.0, None)?;
    let (phi, _) = crate::control::free_equilibrium(&free, &config.solver);
    let [x0, x1] = meta.x_range;
    let grid: Vec<f64> = (0..=200)
        .map(|i| x0 + (x1 - x0) * i as f64 / 200.0)
        .collect();
    let row = DMatrix::from_row_slice(1, grid.len(), &grid);
    let learner = net.learner();
    let style = |color: usize, dashed: bool| CurveStyle {
        color,
        dashed,
        smooth: true,
        ..CurveStyle::default()
    };
    let mut panels = Vec::new();
    for (j, curve) in curves.iter().enumerate() {
        let predict = |p: &[f64]| -> Result<Vec<f64>> {
            Ok(learner.predict(p, &row)?.iter().copied().collect())
        };
        let (sx, sy) =
            crate::system::meta::split_points(learner, free.inputs().column(j).as_slice());
        panels.push(LinePanel {
            caption: format!(
                "task {}: A = {:.2}, phase = {:.2}",
                j + 1,
                curve.amplitude,
                curve.phase
            ),
            y_label: "y".into(),
            y_scale: YScale::Linear,
            curves: vec![
                Curve {
                    xs: grid.clone(),
                    series: Series::new("true curve", grid.iter().map(|&v| curve.at(v)).collect()),
                    style: style(0, false),
                },
                Curve {
                    xs: grid.clone(),
                    series: Series::new("before adaptation (θ)", predict(net.theta().as_slice())?),
                    style: style(1, true),
                },
                Curve {
                    xs: grid.clone(),
                    series: Series::new(
                        "after adaptation (φ*)",
                        predict(phi.column(j).as_slice())?,
                    ),
                    style: style(2, false),
                },
                Curve {
                    xs: sx.iter().copied().collect(),
                    series: Series::new(
                        format!("support points (K = {})", meta.support),
                        sy.iter().copied().collect(),
                    ),
                    style: CurveStyle {
                        color: 5,
                        points_only: true,
                        ..CurveStyle::default()
                    },
                },
            ],
            legend: j == 0,
        });
    }
    line_panels(
        &panels,
        "x",
        false,
        title,
        path,
        config.output.figure_format,
    )
}
