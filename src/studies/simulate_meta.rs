//! `lcsim simulate` on a meta-learning run (spec 7.1, issue 14 item 6): the inner fine-tuning
//! flow phi(t) of chosen tasks, free and then controlled.
//!
//! ```text
//! 0 <= t < t_on:      tau_v dphi/dt = -grad L_in(phi) - lambda (phi - theta),  phi(0) = theta
//! t_on <= t <= t_end: tau_v dphi/dt = ... + psi,  tau_e dpsi/dt = -(H_in + lambda I) psi + u,
//!                     tau_u du_i/dt = -grad L_out(phi) - alpha u_i,  u = k_i u_i - k_p grad L_out
//! ```
//!
//! (tau_v = `dynamics.tau_v`; L_out, the query loss, drives the controller with the scale
//! of a meta-batch of `training.batch_size` tasks, as in training). The core is the rate net's
//! [`simulate_dataset_samples`]; this module adds the inner loss L_in(phi(t)) and the
//! distance |phi(t) - theta|, and writes its own folder `output.dir/simulate-<name>`:
//!
//! ```text
//! config.toml         the resolved config
//! simulate.json       settings, seeds, version, params source, per-task records ("system": "meta")
//! times.npy           (T,)        the output times (a uniform grid on [0, t_end], plus t_on)
//! tasks.npy           (S,)        indices of the tasks in the split (test: meta-test tasks)
//! phi.npy, psi.npy    (S, T, n)   the learner's weights phi(t) and the control psi(t) (n = |theta|)
//! query_loss.npy, inner_loss.npy, psi_norm.npy, u_norm.npy, phi_shift.npy   (S, T)
//!                     L_out(phi(t)), L_in(phi(t)) (unscaled), |psi|, |u|, |phi - theta| (L2)
//! trajectories.csv    one row per (task, time): task,time,phase,query_loss,inner_loss,
//!                     psi_norm,u_norm,phi_shift   (phase: free | controlled)
//! figures/task-<i>.png   the learner's prediction at several times (a learner of one input
//!                     and one output), the inner and query losses, and |psi| against time
//! ```

use crate::config::Config;
use crate::data::{DataSource, Dataset};
use crate::error::{io_error, Result};
use crate::io::npz::NpyArray;
use crate::plot::{line_panels_each_x, Curve, CurveStyle, FigureFormat, LinePanel, Series, YScale};
use crate::run::write_json;
use crate::studies::simulate::{
    simulate_dataset_samples, Simulation, SimulationSettings, SplitChoice,
};
use crate::studies::simulate_write::{
    create_simulation_dir, simulation_json_with, Provenance, Written,
};
use crate::system::meta::MetaSystem;
use crate::system::EquilibriumSystem;
use crate::tasks::Sinusoid;
use nalgebra::DMatrix;
use std::path::{Path, PathBuf};

/// A simulation of meta-learning tasks: the generic record (`y` = phi, n x T; `e` = psi;
/// `loss` = the query loss) and what the inner problem adds.
#[derive(Clone, Debug)]
pub struct MetaSimulation {
    /// The switch-on simulation; its samples are tasks.
    pub sim: Simulation,
    /// The inner (support) loss L_in(phi(t)) of each task, unscaled (NaN where not reached).
    pub inner_loss: Vec<Vec<f64>>,
    /// |phi(t) - theta| of each task.
    pub phi_shift: Vec<Vec<f64>>,
    /// The support set of each task (a column of the split's inputs).
    pub support: Vec<DMatrix<f64>>,
    /// The query set of each task (a column of the split's targets).
    pub query: Vec<DMatrix<f64>>,
}

/// Simulates the tasks `settings.samples` of `tasks` (a split of a meta-learning data set)
/// with the inner problem `net` and the controller, solver and time constants of `config`
/// (see [`simulate_dataset_samples`]), and records the inner loss and |phi - theta| at every
/// output time.
pub fn simulate_meta_tasks(
    config: &Config,
    net: &MetaSystem,
    tasks: &Dataset,
    settings: &SimulationSettings,
) -> Result<MetaSimulation> {
    let sim = simulate_dataset_samples(config, net, None, tasks, settings)?;
    let (x, targets) = tasks.batch(&settings.samples);
    let theta = net.theta();
    let mut inner_loss = Vec::with_capacity(sim.trajectories.len());
    let mut phi_shift = Vec::with_capacity(sim.trajectories.len());
    for (j, tr) in sim.trajectories.iter().enumerate() {
        // Control everywhere: the loss rows are all of phi.
        debug_assert_eq!(tr.y.nrows(), net.state_dim());
        let support = x.columns(j, 1).into_owned();
        let (mut inner, mut shift) = (Vec::new(), Vec::new());
        for k in 0..tr.y.ncols() {
            let phi = tr.y.columns(k, 1).into_owned();
            if phi.iter().all(|v| v.is_finite()) {
                inner.push(net.inner_losses(&phi, &support)[0]);
                shift.push((phi - theta).norm());
            } else {
                inner.push(f64::NAN);
                shift.push(f64::NAN);
            }
        }
        inner_loss.push(inner);
        phi_shift.push(shift);
    }
    Ok(MetaSimulation {
        support: (0..x.ncols())
            .map(|j| x.columns(j, 1).into_owned())
            .collect(),
        query: (0..x.ncols())
            .map(|j| targets.columns(j, 1).into_owned())
            .collect(),
        sim,
        inner_loss,
        phi_shift,
    })
}

/// The true curves of the simulated sinusoid tasks (`data.source = "sinusoid"`): the split's
/// tasks redrawn from their seed (`data.seed`, or `data.seed ^ TEST_TASK_SEED` for the
/// meta-test tasks), used only when every redrawn support set is the simulated one.
pub fn sinusoid_curves(
    config: &Config,
    split: SplitChoice,
    tasks: &Dataset,
    samples: &[usize],
) -> Option<Vec<Sinusoid>> {
    if config.data.source != DataSource::Sinusoid {
        return None;
    }
    let seed = match split {
        SplitChoice::Test => config.data.seed ^ crate::tasks::TEST_TASK_SEED,
        SplitChoice::Train => config.data.seed,
    };
    let n = samples.iter().max()? + 1;
    let (drawn, curves) = crate::tasks::sinusoid_tasks(&config.meta_settings(), n, seed).ok()?;
    let same = samples.iter().all(|&i| {
        i < tasks.len() && drawn.inputs.nrows() == tasks.inputs.nrows() && {
            drawn.inputs.column(i) == tasks.inputs.column(i)
        }
    });
    same.then(|| samples.iter().map(|&i| curves[i]).collect())
}

/// Creates `dir` and writes the folder of a meta-learning simulation (module doc); the
/// figures when `config.output.figures`, `curves` (one per task) drawn in them when given.
/// simulate.json last; every file atomically.
pub fn write_meta_simulation(
    dir: &Path,
    config: &Config,
    net: &MetaSystem,
    msim: &MetaSimulation,
    curves: Option<&[Sinusoid]>,
    provenance: &Provenance,
) -> Result<Written> {
    let mut written = create_simulation_dir(dir, config)?;
    written.write_data(meta_arrays(msim), &meta_csv(msim))?;
    if config.output.figures {
        written.figures = draw_meta_figures(
            &dir.join("figures"),
            config,
            net,
            msim,
            curves,
            &provenance.name,
            provenance.settings.split,
            config.output.figure_format,
        )?;
    }
    let json_path = dir.join("simulate.json");
    write_json(
        &json_path,
        &meta_json(config, net, msim, provenance, &written),
    )?;
    written.files.push(json_path);
    Ok(written)
}

/// The arrays of a meta-learning simulation by file stem (module doc).
pub fn meta_arrays(msim: &MetaSimulation) -> Vec<(&'static str, NpyArray)> {
    let sim = &msim.sim;
    let (s, t) = (sim.trajectories.len(), sim.times.len());
    let cube = |get: &dyn Fn(&crate::studies::simulate::SampleTrajectory) -> &DMatrix<f64>| {
        let rows = sim.trajectories.first().map_or(0, |tr| get(tr).nrows());
        NpyArray {
            shape: vec![s, t, rows],
            data: sim
                .trajectories
                .iter()
                .flat_map(|tr| get(tr).as_slice().to_vec())
                .collect(),
        }
    };
    let plane = |rows: Vec<&Vec<f64>>| NpyArray {
        shape: vec![s, t],
        data: rows.into_iter().flatten().copied().collect(),
    };
    let trs = || sim.trajectories.iter();
    vec![
        (
            "times",
            NpyArray {
                shape: vec![t],
                data: sim.times.clone(),
            },
        ),
        (
            "tasks",
            NpyArray {
                shape: vec![s],
                data: sim.samples.iter().map(|&i| i as f64).collect(),
            },
        ),
        ("phi", cube(&|tr| &tr.y)),
        ("psi", cube(&|tr| &tr.e)),
        ("query_loss", plane(trs().map(|tr| &tr.loss).collect())),
        ("inner_loss", plane(msim.inner_loss.iter().collect())),
        ("psi_norm", plane(trs().map(|tr| &tr.psi_norm).collect())),
        ("u_norm", plane(trs().map(|tr| &tr.u_norm).collect())),
        ("phi_shift", plane(msim.phi_shift.iter().collect())),
    ]
}

/// trajectories.csv of a meta-learning simulation: one row per (task, time), columns
/// `task,time,phase,query_loss,inner_loss,psi_norm,u_norm,phi_shift` (phi itself is in
/// phi.npy).
pub fn meta_csv(msim: &MetaSimulation) -> String {
    let sim = &msim.sim;
    let header = [
        "task",
        "time",
        "phase",
        "query_loss",
        "inner_loss",
        "psi_norm",
        "u_norm",
        "phi_shift",
    ];
    let rows = sim.trajectories.iter().enumerate().flat_map(|(j, tr)| {
        sim.times.iter().enumerate().map(move |(k, &t)| {
            let phase = if k < sim.switch_index {
                "free"
            } else {
                "controlled"
            };
            let mut row = vec![sim.samples[j].to_string(), t.to_string(), phase.into()];
            for v in [
                tr.loss[k],
                msim.inner_loss[j][k],
                tr.psi_norm[k],
                tr.u_norm[k],
                msim.phi_shift[j][k],
            ] {
                row.push(v.to_string());
            }
            row
        })
    });
    crate::io::csv_text::csv_text(header, rows)
}

/// Indices of the output times drawn in the prediction panel of task j: t = 0, the times
/// the free relaxation has covered half and 90% of its distance |phi(t_on) - theta|, t_on,
/// the times |psi| reaches half and 90% of its final value, and t_end (each once; a tenth
/// and a third of a segment where those are not recorded).
pub fn prediction_times(msim: &MetaSimulation, j: usize) -> Vec<usize> {
    let sim = &msim.sim;
    let (times, k_on) = (&sim.times, sim.switch_index);
    let last = times.len().saturating_sub(1);
    let (t_on, t_end) = (sim.t_on, times[last]);
    let nearest = |range: std::ops::Range<usize>, t: f64| {
        range.min_by(|&a, &b| (times[a] - t).abs().total_cmp(&(times[b] - t).abs()))
    };
    // The first time in `range` where `values` reaches `fraction` of `values[end]`.
    let reached = |values: &[f64], range: std::ops::Range<usize>, end: usize, fraction: f64| {
        let target = values
            .get(end)
            .copied()
            .filter(|v| v.is_finite() && *v > 0.0)?;
        range
            .clone()
            .find(|&k| values[k] >= fraction * target)
            .filter(|&k| k > range.start)
    };
    let (shift, psi) = (&msim.phi_shift[j], &sim.trajectories[j].psi_norm);
    let mut ks = vec![0];
    for (fraction, share) in [(0.5, 10.0), (0.9, 3.0)] {
        ks.extend(
            reached(shift, 0..k_on, k_on.min(last), fraction)
                .or_else(|| nearest(0..k_on, t_on / share)),
        );
    }
    ks.push(k_on.min(last));
    for (fraction, share) in [(0.5, 10.0), (0.9, 3.0)] {
        ks.extend(
            reached(psi, k_on..last, last, fraction)
                .or_else(|| nearest(k_on..times.len(), t_on + (t_end - t_on) / share)),
        );
    }
    ks.push(last);
    let mut out: Vec<usize> = Vec::new();
    for k in ks {
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out.sort_unstable();
    out
}

/// A time for a legend: `2`, `0.25`, `1.3e-3`.
fn time_text(t: f64) -> String {
    if t == t.round() && t.abs() < 1e6 {
        format!("{t:.0}")
    } else if t.abs() >= 0.01 {
        let s = format!("{t:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{t:.1e}")
    }
}

/// A dashed black vertical line at `t` over the finite values of `values` (none without one).
fn vertical_line(t: f64, values: &[&[f64]], positive: bool, label: &str) -> Option<Curve> {
    let finite = values
        .iter()
        .flat_map(|v| v.iter().copied())
        .filter(|v| v.is_finite() && (!positive || *v > 0.0));
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    (lo <= hi).then(|| Curve {
        xs: vec![t, t],
        series: Series::new(label, vec![lo, hi]),
        style: CurveStyle {
            color: 6,
            dashed: true,
            smooth: true,
            ..CurveStyle::default()
        },
    })
}

/// One figure per task in `dir` (created), `task-<i>.<ext>`: the learner's prediction on the
/// x range at its [`prediction_times`] with the true curve (when given), the support and query
/// points (a learner of one input and one output only); the inner and query losses against
/// time (log y where positive); |psi| against time; t_on marked.
#[allow(clippy::too_many_arguments)]
pub fn draw_meta_figures(
    dir: &Path,
    config: &Config,
    net: &MetaSystem,
    msim: &MetaSimulation,
    curves: Option<&[Sinusoid]>,
    name: &str,
    split: SplitChoice,
    format: FigureFormat,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let sim = &msim.sim;
    let learner = net.learner();
    let one_d = learner.input_dim() == 1 && learner.output_dim() == 1;
    let style = |color: usize, dashed: bool| CurveStyle {
        color,
        dashed,
        smooth: true,
        ..CurveStyle::default()
    };
    let time_label = crate::plot::TIME_LABEL.to_string();
    let mut paths = Vec::new();
    for (j, tr) in sim.trajectories.iter().enumerate() {
        let task = sim.samples[j];
        let mut panels: Vec<(LinePanel, String)> = Vec::new();
        if one_d {
            let (sx, sy) = crate::system::meta::split_points(learner, msim.support[j].as_slice());
            let (qx, qy) = crate::system::meta::split_points(learner, msim.query[j].as_slice());
            let [mut x0, mut x1] = config.meta_settings().x_range;
            for &v in sx.iter().chain(qx.iter()) {
                (x0, x1) = (x0.min(v), x1.max(v));
            }
            let grid: Vec<f64> = (0..=200)
                .map(|i| x0 + (x1 - x0) * i as f64 / 200.0)
                .collect();
            let row = DMatrix::from_row_slice(1, grid.len(), &grid);
            let shown = prediction_times(msim, j);
            let mut lines = Vec::new();
            if let Some(c) = curves.and_then(|c| c.get(j)) {
                lines.push(Curve {
                    xs: grid.clone(),
                    series: Series::new(
                        format!(
                            "true curve (A = {:.2}, phase = {:.2})",
                            c.amplitude, c.phase
                        ),
                        grid.iter().map(|&v| c.at(v)).collect(),
                    ),
                    style: style(6, false),
                });
            }
            // Colours along the flow: free (dashed) blue, sky blue, green; t_on orange;
            // controlled purple, yellow; t_end vermillion.
            let palette = [0, 5, 2, 3, 4, 7, 1];
            let last = sim.times.len() - 1;
            for (i, &k) in shown.iter().enumerate() {
                let phi = tr.y.column(k);
                let values: Vec<f64> = if phi.iter().all(|v| v.is_finite()) {
                    learner.predict(phi.as_slice(), &row).map_or_else(
                        |_| vec![f64::NAN; grid.len()],
                        |p| p.iter().copied().collect(),
                    )
                } else {
                    vec![f64::NAN; grid.len()]
                };
                let t = sim.times[k];
                let what = if k == 0 {
                    " (θ)"
                } else if k == sim.switch_index {
                    " (control on)"
                } else if k == last {
                    " (end)"
                } else if k < sim.switch_index {
                    " (free)"
                } else {
                    " (controlled)"
                };
                lines.push(Curve {
                    xs: grid.clone(),
                    series: Series::new(format!("t = {}{what}", time_text(t)), values),
                    style: style(palette[i % palette.len()], k < sim.switch_index),
                });
            }
            lines.push(Curve {
                xs: sx.iter().copied().collect(),
                series: Series::new(
                    format!("support points (K = {})", sx.len()),
                    sy.iter().copied().collect(),
                ),
                style: CurveStyle {
                    color: 6,
                    points_only: true,
                    ..CurveStyle::default()
                },
            });
            lines.push(Curve {
                xs: qx.iter().copied().collect(),
                series: Series::new(
                    format!("query points ({})", qx.len()),
                    qy.iter().copied().collect(),
                ),
                style: CurveStyle {
                    color: 6,
                    points_only: true,
                    square: true,
                    ..CurveStyle::default()
                },
            });
            panels.push((
                LinePanel {
                    caption: "the learner's prediction g_φ(t)(x)".into(),
                    y_label: "y".into(),
                    y_scale: YScale::Linear,
                    curves: lines,
                    legend: true,
                },
                "x".into(),
            ));
        }
        let (query, inner) = (&tr.loss, &msim.inner_loss[j]);
        let log = query
            .iter()
            .chain(inner.iter())
            .all(|v| !v.is_finite() || *v > 0.0);
        let mut losses = vec![
            Curve {
                xs: sim.times.clone(),
                series: Series::new("query loss L_out (controller's)", query.clone()),
                style: style(1, false),
            },
            Curve {
                xs: sim.times.clone(),
                series: Series::new("inner loss L_in (support)", inner.clone()),
                style: style(0, false),
            },
        ];
        losses.extend(vertical_line(
            sim.t_on,
            &[query, inner],
            log,
            "control on (t_on)",
        ));
        panels.push((
            LinePanel {
                caption: "inner and query losses".into(),
                y_label: "loss".into(),
                y_scale: if log { YScale::Log } else { YScale::Linear },
                curves: losses,
                legend: true,
            },
            time_label.clone(),
        ));
        let mut control = vec![Curve {
            xs: sim.times.clone(),
            series: Series::new("|ψ|", tr.psi_norm.clone()),
            style: style(2, false),
        }];
        control.extend(vertical_line(
            sim.t_on,
            &[&tr.psi_norm],
            false,
            "control on (t_on)",
        ));
        panels.push((
            LinePanel {
                caption: "control magnitude |ψ(t)|".into(),
                y_label: "L2 norm".into(),
                y_scale: YScale::Linear,
                curves: control,
                legend: false,
            },
            time_label.clone(),
        ));
        let path = dir.join(format!("task-{task}.{}", format.extension()));
        let title = format!(
            "{name}: {} task {task}, inner fine-tuning free until t = {}, controlled to t = {}",
            split.name(),
            time_text(sim.t_on),
            time_text(*sim.times.last().unwrap_or(&0.0))
        );
        line_panels_each_x(&panels, &title, &path, format)?;
        paths.push(path);
    }
    Ok(paths)
}

/// The content of simulate.json for a meta-learning simulation.
fn meta_json(
    config: &Config,
    net: &MetaSystem,
    msim: &MetaSimulation,
    p: &Provenance,
    written: &Written,
) -> serde_json::Value {
    let sim = &msim.sim;
    let (k_on, last) = (sim.switch_index, sim.times.len().saturating_sub(1));
    let tasks: Vec<serde_json::Value> = sim
        .trajectories
        .iter()
        .enumerate()
        .map(|(j, tr)| {
            let inner = &msim.inner_loss[j];
            serde_json::json!({
                "task": sim.samples[j],
                "free": tr.free,
                "controlled": tr.controlled,
                "inner_loss_at_0": inner[0],
                "inner_loss_at_t_on": inner.get(k_on),
                "inner_loss_at_t_end": inner[last],
                "query_loss_at_0": tr.loss[0],
                "query_loss_at_t_on": tr.loss.get(k_on),
                "query_loss_at_t_end": tr.loss[last],
                "phi_shift_at_t_on": msim.phi_shift[j].get(k_on),
                "phi_shift_at_t_end": msim.phi_shift[j][last],
                "psi_norm_at_t_end": tr.psi_norm[last],
                "H_at_t_end": 0.5 * tr.psi_norm[last].powi(2),
            })
        })
        .collect();
    let specific = serde_json::json!({
        "system": "meta",
        "samples_are": "tasks",
        "lambda": net.lambda(),
        "learner": net.learner().sizes(),
        "n_params": net.state_dim(),
        "method": config.method.name.name(),
        "switch_index": k_on,
        "tasks": tasks,
        "shapes": {
            "times": "(T,)", "tasks": "(S,)",
            "phi": "(S, T, n_params)", "psi": "(S, T, n_params)",
            "query_loss": "(S, T)", "inner_loss": "(S, T)", "psi_norm": "(S, T)",
            "u_norm": "(S, T)", "phi_shift": "(S, T)",
            "trajectories.csv": "one row per (task, time): task,time,phase,query_loss,inner_loss,psi_norm,u_norm,phi_shift",
        },
    });
    simulation_json_with(config, sim, p, written, specific)
}
