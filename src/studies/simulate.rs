//! The time course of one network when its least-control controller switches on
//! (`lcsim simulate`): the free relaxation from rest, then the LCP-DI controlled dynamics
//! (spec 3.1) from the state reached at the switch-on time `t_on`.
//!
//! ```text
//! 0 <= t < t_on:     tau_v dphi/dt = f(phi),  phi(0) = 0          (controller off: u_i = e = u = 0)
//! t_on <= t <= t_end: tau_v dphi/dt = f(phi) + psi,  psi = (e, u)  (u_i(t_on) = e(t_on) = 0)
//!                    tau_u du_i/dt = -grad_y L - alpha u_i,  u = k_i u_i - k_p grad_y L
//!                    tau_e de/dt   = -e + s'(v) * (W^T e + D^T u)
//! ```
//!
//! Times are in the time units of `dynamics.tau_v` (with the default tau_v = 1: units of
//! tau_v). [`crate::studies::simulate_write`] writes a simulation's folder.
//!
//! A meta-learning system (control on every component) is simulated by the same code and
//! written by [`crate::studies::simulate_meta`] (phi, psi, the inner and query losses).
//!
//! Load the table with `pandas.read_csv("trajectories.csv")`; one sample's curves are
//! `df[df["sample"] == i].plot(x="time", y=["y_0", "y_1"])`. Points a solve did not reach
//! (it diverged or hit `solver.max_steps`) are NaN.

use crate::config::{Config, Method};
use crate::control::{CoupledSystem, Objective};
use crate::data::Dataset;
use crate::error::{invalid, Result};
use crate::learn::energy::EnergyDescent;
use crate::solve::{solve_trajectories, SolverSettings, SteadyState, Termination, VectorField};
use crate::studies::progress;
use crate::system::loss::predicted_classes;
use crate::system::params::Params;
use crate::system::{ControlEntry, EquilibriumSystem, FeatureMapLayout};
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

/// Which split of the data the simulated samples come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum SplitChoice {
    /// The held-out test split.
    #[default]
    Test,
    /// The training split.
    Train,
}

impl SplitChoice {
    /// Name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SplitChoice::Test => "test",
            SplitChoice::Train => "train",
        }
    }

    /// The chosen dataset of a split.
    pub fn of(self, split: &crate::data::Split) -> &Dataset {
        match self {
            SplitChoice::Test => &split.test,
            SplitChoice::Train => &split.train,
        }
    }
}

/// What to simulate and where to record it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimulationSettings {
    /// Split the samples come from.
    pub split: SplitChoice,
    /// Indices of the samples in the split (distinct, non-empty).
    pub samples: Vec<usize>,
    /// Time the controller switches on (>= 0, time units).
    pub t_on: f64,
    /// End of the simulation (> t_on).
    pub t_end: f64,
    /// Points of the uniform output grid on [0, t_end] (>= 2); t_on is added when off-grid.
    pub points: usize,
    /// Hidden units drawn in the figures: the first k (>= 1; at most n_h are drawn).
    pub hidden_units: usize,
    /// Hidden units drawn instead of the first `hidden_units`, by index (rows of the state
    /// before the outputs; for a conv system `(c h + y) w + x` of the first feature maps,
    /// layer after layer). Empty: the first `hidden_units`.
    #[serde(default)]
    pub units: Vec<usize>,
}

impl Default for SimulationSettings {
    fn default() -> Self {
        SimulationSettings {
            split: SplitChoice::Test,
            samples: vec![0],
            t_on: 50.0,
            t_end: 150.0,
            points: 301,
            hidden_units: 8,
            units: Vec::new(),
        }
    }
}

impl SimulationSettings {
    /// Checks every field; `split_len` is the number of samples in the chosen split.
    /// Errors name the field (`samples`, `t_on`, `t_end`, `points`, `hidden_units`).
    pub fn validate(&self, split_len: usize) -> Result<()> {
        if self.samples.is_empty() {
            return Err(invalid("samples", "[]", "at least one sample index"));
        }
        if let Some(&i) = self.samples.iter().find(|&&i| i >= split_len) {
            return Err(invalid(
                "samples",
                i,
                &format!(
                    "indices 0..{split_len} ({} split of {split_len} samples)",
                    self.split.name()
                ),
            ));
        }
        for (k, &i) in self.samples.iter().enumerate() {
            if self.samples[..k].contains(&i) {
                return Err(invalid("samples", i, "distinct indices (listed twice)"));
            }
        }
        if !(self.t_on.is_finite() && self.t_on >= 0.0) {
            return Err(invalid("t_on", self.t_on, "a finite time >= 0"));
        }
        if !(self.t_end.is_finite() && self.t_end > self.t_on) {
            return Err(invalid(
                "t_end",
                self.t_end,
                &format!("a finite time > t_on = {}", self.t_on),
            ));
        }
        if self.points < 2 {
            return Err(invalid("points", self.points, "an integer >= 2"));
        }
        if self.hidden_units == 0 {
            return Err(invalid("hidden_units", 0, "an integer >= 1"));
        }
        Ok(())
    }

    /// The hidden units the figures draw among `n_h`: `units`, or the first `hidden_units`;
    /// an error naming `units` for an index >= n_h.
    pub fn drawn_units(&self, n_h: usize) -> Result<Vec<usize>> {
        if self.units.is_empty() {
            return Ok((0..self.hidden_units.min(n_h)).collect());
        }
        match self.units.iter().find(|&&u| u >= n_h) {
            Some(&u) => Err(invalid(
                "units",
                u,
                &format!("hidden unit indices 0..{n_h}"),
            )),
            None => Ok(self.units.clone()),
        }
    }

    /// Refuses a simulation whose recorded trajectories would not fit in memory: about
    /// `8 (points + 1) samples (2 d + 8)` bytes for a coupled state of `d` entries (the
    /// state and its rate of change at every output time, and the scalar series).
    pub fn check_memory(&self, state_dim: usize) -> Result<()> {
        let per_point = 2.0 * state_dim as f64 + 8.0;
        let estimate = 8.0 * (self.points as f64 + 1.0) * self.samples.len() as f64 * per_point;
        crate::config::check_memory("the simulation", estimate, "points, samples")
    }

    /// The output times: `points` uniform times on [0, t_end] (the last exactly t_end), with
    /// t_on inserted when no grid time after 0 is within 1e-9 * t_end of it (such a time is
    /// set to t_on exactly).
    pub fn output_times(&self) -> Vec<f64> {
        let n = self.points.max(2);
        let mut times: Vec<f64> = (0..n)
            .map(|k| self.t_end * k as f64 / (n - 1) as f64)
            .collect();
        times[n - 1] = self.t_end;
        let tol = 1e-9 * self.t_end.abs();
        match times.iter().position(|t| (t - self.t_on).abs() <= tol) {
            // The grid keeps t = 0 unless t_on = 0.
            Some(k) if k > 0 || self.t_on == 0.0 => times[k] = self.t_on,
            _ => {
                let k = times.partition_point(|&t| t < self.t_on);
                times.insert(k, self.t_on);
            }
        }
        times
    }
}

/// How one segment of a simulation ended (from its [`SteadyState`] record; times absolute).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SegmentRecord {
    /// `converged`: the state met the steady-state test of `[solver]` at the segment's end;
    /// `max-time`: the segment ended before the state settled; `diverged`, `max-steps`,
    /// `solver-error`: the solve stopped early (later points are NaN).
    pub termination: Termination,
    /// Start of the segment (0 or t_on).
    pub start: f64,
    /// Requested end of the segment (t_on or t_end).
    pub end: f64,
    /// Time the solver reached.
    pub time_reached: f64,
    /// `max_i |tau dz/dt|_i` at the last state.
    pub residual: f64,
    /// `max_i |r_i| / (atol + rtol |z_i|)` at the last state (settled when <= 1).
    pub scaled_residual: f64,
    /// Solver steps.
    pub steps: usize,
    /// Vector-field evaluations.
    pub rhs_evals: usize,
    /// Output times requested in this segment (the free segment's include t_on).
    pub points_requested: usize,
    /// Output times recorded.
    pub points_recorded: usize,
}

impl SegmentRecord {
    fn new(rec: &SteadyState, start: f64, end: f64, requested: usize) -> Self {
        SegmentRecord {
            termination: rec.termination.clone(),
            start,
            end,
            time_reached: start + rec.time,
            residual: rec.residual,
            scaled_residual: rec.scaled_residual,
            steps: rec.steps,
            rhs_evals: rec.rhs_evals,
            points_requested: requested,
            points_recorded: recorded(rec),
        }
    }
}

fn recorded(rec: &SteadyState) -> usize {
    rec.trajectory.as_ref().map_or(0, |t| t.states.ncols())
}

/// The recorded time course of one sample; matrices are units x T (one column per time).
#[derive(Clone, Debug)]
pub struct SampleTrajectory {
    /// Hidden units v (n_h x T).
    pub v: DMatrix<f64>,
    /// Output units y (n_y x T).
    pub y: DMatrix<f64>,
    /// Integral controller u_i (n_y x T; 0 before t_on).
    pub u_i: DMatrix<f64>,
    /// Output control u = k_i u_i - k_p grad_y L (n_y x T; 0 before t_on).
    pub u: DMatrix<f64>,
    /// Hidden control e (n_h x T; 0 before t_on).
    pub e: DMatrix<f64>,
    /// |psi(t)| = |(e, u)| (L2).
    pub psi_norm: Vec<f64>,
    /// |e(t)|.
    pub e_norm: Vec<f64>,
    /// |u(t)|.
    pub u_norm: Vec<f64>,
    /// L(y(t), target), unscaled.
    pub loss: Vec<f64>,
    /// The free relaxation over [0, t_on] (None when t_on = 0).
    pub free: Option<SegmentRecord>,
    /// The controlled segment over [t_on, t_end] (None when the free solve stopped before t_on).
    pub controlled: Option<SegmentRecord>,
}

/// A simulation of several samples on one time grid.
#[derive(Clone, Debug)]
pub struct Simulation {
    /// Output times (T), increasing.
    pub times: Vec<f64>,
    /// Switch-on time.
    pub t_on: f64,
    /// Index of the first time >= t_on: points before it are free, from it on controlled.
    pub switch_index: usize,
    /// Sample indices (in the split, or columns of the system).
    pub samples: Vec<usize>,
    /// Class of each sample (argmax of its target).
    pub labels: Vec<usize>,
    /// The loss read from y.
    pub loss: std::sync::Arc<dyn crate::system::loss::StateLoss>,
    /// Scale of grad_y L that drives each controller (see [`simulation_objective`]).
    pub loss_scale: f64,
    /// One trajectory per sample.
    pub trajectories: Vec<SampleTrajectory>,
    /// The controller's learned weights during the simulation (LCP-KP: B, G; LCP-LF: Q),
    /// written as feedback_NAME.npy.
    pub feedback: Option<Params>,
    /// Where v holds feature maps (conv systems; empty otherwise): drawn as free vs
    /// controlled maps.
    pub feature_maps: Vec<FeatureMapLayout>,
}

impl Simulation {
    /// Hidden units n_h.
    pub fn n_hidden(&self) -> usize {
        self.trajectories.first().map_or(0, |s| s.v.nrows())
    }
    /// Output units n_y.
    pub fn n_out(&self) -> usize {
        self.trajectories.first().map_or(0, |s| s.y.nrows())
    }
}

/// The objective each simulated controller sees: the configured loss and loss scale for a
/// mini-batch of `training.batch_size` samples, so a sample is driven as in training
/// (`batch-mean`: by grad_y L / batch_size). For `model.kind = "meta"` the loss is the query
/// loss of each task (a meta-batch of `training.batch_size` tasks).
pub fn simulation_objective(config: &Config) -> Objective {
    // `method.loss` for the rate net; the query loss of each task for meta-learning.
    config.objective_scaled(config.method.loss_scale, config.training.batch_size)
}

/// Simulates samples of a dataset with the dynamics, controller, loss and solver of
/// `config` (see [`simulate_switch_on`]); validates `settings` first. The controller is
/// `method.name`'s: LCP-KP and LCP-LF need their learned weights (`feedback`: B, G or Q,
/// which the simulation records), LCP-EBD follows the gradient flow on E_alpha instead of
/// a controller ([`simulate_switch_on_with`]).
pub fn simulate_dataset_samples<M: EquilibriumSystem>(
    config: &Config,
    model: &M,
    feedback: Option<&Params>,
    data: &Dataset,
    settings: &SimulationSettings,
) -> Result<Simulation> {
    settings.validate(data.len())?;
    let method = config.method.name;
    if !method.is_least_control() {
        return Err(invalid(
            "method.name",
            method.name(),
            "a least-control method (lcp-di, lcp-kp, lcp-lf, lcp-ebd): simulate switches a controller on",
        ));
    }
    let (x, targets) = data.batch(&settings.samples);
    let controlled = CoupledSystem::new(
        model,
        x,
        targets,
        simulation_objective(config),
        config.dynamics.tau_v,
        Some(config.controller_settings()),
    )?
    .with_feedback(crate::learn::feedback::circuit(method, feedback)?)?;
    let (times, t_on) = (settings.output_times(), settings.t_on);
    let mut sim = if method == Method::LcpEbd {
        let flow = EnergyDescent::new(&controlled, config.controller_settings().beta())?;
        simulate_switch_on_with(&controlled, &flow, &config.solver, &times, t_on)?
    } else {
        simulate_switch_on(&controlled, &config.solver, &times, t_on)?
    };
    sim.samples = settings.samples.clone();
    sim.feature_maps = model.feature_maps();
    sim.feedback = feedback
        .filter(|_| matches!(method, Method::LcpKp | Method::LcpLf))
        .cloned();
    Ok(sim)
}

/// What the controlled segment of a simulation integrates, and how its state reads.
pub trait ControlledSegment: VectorField {
    /// The segment's start when the network stands at phi (the controller at rest).
    fn start(&self, phi: &DMatrix<f64>) -> Result<DMatrix<f64>>;
    /// `(phi, u_i, psi)` of a state (u_i None when there is no integral controller).
    fn read(&self, z: &DMatrix<f64>) -> (DMatrix<f64>, Option<DMatrix<f64>>, DMatrix<f64>);
}

impl<M: EquilibriumSystem> ControlledSegment for CoupledSystem<'_, M> {
    fn start(&self, phi: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        self.state_with_phi(phi)
    }
    fn read(&self, z: &DMatrix<f64>) -> (DMatrix<f64>, Option<DMatrix<f64>>, DMatrix<f64>) {
        let u_i = z.rows_range(self.integral_rows()).into_owned();
        (self.phi(z), Some(u_i), self.control(z))
    }
}

impl<M: EquilibriumSystem> ControlledSegment for EnergyDescent<'_, M> {
    fn start(&self, phi: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        Ok(phi.clone())
    }
    /// phi itself, no integral controller, and the control it implies, `psi = -f(phi)`.
    fn read(&self, z: &DMatrix<f64>) -> (DMatrix<f64>, Option<DMatrix<f64>>, DMatrix<f64>) {
        (z.clone(), None, self.control(z))
    }
}

/// For every sample (column) of the controlled system: the free relaxation from rest,
///
/// ```text
/// tau_v dphi/dt = f(phi, theta, x),   phi(0) = 0,   0 <= t <= t_on,
/// ```
///
/// then the controller switched on at the state reached, `z(t_on) = (phi(t_on), u_i = 0, e = 0)`,
///
/// ```text
/// tau_v dphi/dt = f(phi) + psi,   psi = (e, u),   u = k_i u_i - k_p grad_y L(y)
/// tau_u du_i/dt = -grad_y L(y) - alpha u_i
/// tau_e de/dt   = -e + s'(v) * (W^T e + D^T u)          t_on <= t <= t_end,
/// ```
///
/// each integrated with `opts.method` (the controlled segment in shifted time t - t_on; an
/// accelerated method, which does not follow the flow, is replaced by its fallback
/// integrator, see [`SolverSettings::integrator`]; every segment integrates all samples
/// at once with [`solve_trajectories`]: Tsit45 batched over chunks of `solver.chunk` samples),
/// recorded at `times` (t_end = the last time): before t_on the free state with u_i = e =
/// u = 0, from t_on on the controlled state. Each segment is integrated to its last output
/// time, whether or not its state has settled; `opts.stop.max_time` is replaced by the segment's
/// length, the other options apply as given.
///
/// Errors: `controlled` has no controller; `opts` invalid; `times` not increasing, negative
/// or non-finite, or t_on not in [0, last time).
pub fn simulate_switch_on<M: EquilibriumSystem>(
    controlled: &CoupledSystem<'_, M>,
    opts: &SolverSettings,
    times: &[f64],
    t_on: f64,
) -> Result<Simulation> {
    simulate_switch_on_with(controlled, controlled, opts, times, t_on)
}

/// [`simulate_switch_on`] with another controlled segment after t_on (same samples as
/// `controlled`, whose free system runs before t_on): LCP-EBD's gradient flow
/// `tau_v dphi/dt = -grad E_alpha(phi)` from phi(t_on), recorded with `psi = -f(phi)` and
/// u_i = NaN.
pub fn simulate_switch_on_with<M: EquilibriumSystem, S: ControlledSegment>(
    controlled: &CoupledSystem<'_, M>,
    segment: &S,
    opts: &SolverSettings,
    times: &[f64],
    t_on: f64,
) -> Result<Simulation> {
    if controlled.controller().is_none() {
        return Err(invalid(
            "controlled",
            "a free system",
            "a CoupledSystem with a controller (Some(ControllerSettings))",
        ));
    }
    opts.validate()?;
    let opts = &opts.integrator();
    let last = times.last().copied().unwrap_or(f64::NAN);
    if times.is_empty()
        || times.iter().any(|t| !t.is_finite() || *t < 0.0)
        || times.windows(2).any(|w| w[1] <= w[0])
    {
        return Err(invalid(
            "times",
            format!("{times:?}"),
            "finite, increasing times >= 0",
        ));
    }
    if !(t_on >= 0.0 && t_on < last) {
        return Err(invalid(
            "t_on",
            t_on,
            &format!("a time in [0, {last}) (the last output time)"),
        ));
    }
    let objective = controlled.objective();
    let trajectories = simulate_all(controlled, segment, opts, times, t_on)?;
    Ok(Simulation {
        times: times.to_vec(),
        t_on,
        switch_index: times.partition_point(|&t| t < t_on),
        samples: (0..controlled.batch()).collect(),
        labels: predicted_classes(controlled.targets()),
        loss: objective.loss,
        loss_scale: objective.scale,
        trajectories,
        feedback: None,
        feature_maps: Vec::new(),
    })
}

/// Every sample: the free segment of all samples as one batched integration, then the
/// controlled segment of the samples whose free segment reached t_on.
fn simulate_all<M: EquilibriumSystem, S: ControlledSegment>(
    sys: &CoupledSystem<'_, M>,
    segment: &S,
    opts: &SolverSettings,
    times: &[f64],
    t_on: f64,
) -> Result<Vec<SampleTrajectory>> {
    // Readout systems (the rate net): v = phi on C (hidden units), y = phi on R (outputs),
    // psi = (e on C, u on R). Control everywhere (meta-learning, C = all rows): v = phi,
    // y = phi on R, e = psi, u = k_i u_i - k_p grad_R L (it enters e's dynamics).
    let (c_rows, r_rows) = (sys.controlled_rows(), sys.loss_rows());
    let readout = sys.model().control_entry() == ControlEntry::Readout;
    let (n_h, n_y, n_t) = (c_rows.len(), r_rows.len(), times.len());
    let k_on = times.partition_point(|&t| t < t_on);
    let nan = |rows: usize| DMatrix::from_element(rows, n_t, f64::NAN);
    let batch = sys.batch();
    let mut outs: Vec<SampleTrajectory> = (0..batch)
        .map(|_| SampleTrajectory {
            v: nan(n_h),
            y: nan(n_y),
            u_i: nan(n_y),
            u: nan(n_y),
            e: nan(n_h),
            psi_norm: vec![f64::NAN; n_t],
            e_norm: vec![f64::NAN; n_t],
            u_norm: vec![f64::NAN; n_t],
            loss: vec![f64::NAN; n_t],
            free: None,
            controlled: None,
        })
        .collect();
    let loss = sys.objective().loss;

    // Free segment over [0, t_on], recorded at the grid times before t_on and at t_on.
    let free = sys.free();
    let mut phi_on: Vec<Option<DMatrix<f64>>> = if t_on > 0.0 {
        progress::report("simulate: free segment", 0, 2);
        let free_times: Vec<f64> = times[..k_on].iter().copied().chain([t_on]).collect();
        let mut free_opts = opts.clone();
        free_opts.stop.max_time = t_on;
        let recs = solve_trajectories(&free, &free.initial_state(), &free_opts, &free_times);
        let targets = sys.targets();
        recs.records
            .into_iter()
            .zip(&mut outs)
            .enumerate()
            .map(|(j, (rec, out))| {
                out.free = Some(SegmentRecord::new(&rec, 0.0, t_on, free_times.len()));
                let states = rec.trajectory.map(|t| t.states);
                if let Some(states) = &states {
                    // All recorded points of the sample at once (its target repeated).
                    let points = states.ncols().min(k_on);
                    let target = targets.select_columns(&vec![j; points]);
                    let y = states.view((r_rows.start, 0), (n_y, points)).into_owned();
                    let losses = loss.values(&y, &target);
                    for (k, &l) in losses.iter().enumerate().take(points) {
                        let phi = states.column(k);
                        out.v.set_column(k, &phi.rows_range(c_rows.clone()));
                        out.y.set_column(k, &phi.rows_range(r_rows.clone()));
                        out.u_i.column_mut(k).fill(0.0);
                        out.u.column_mut(k).fill(0.0);
                        out.e.column_mut(k).fill(0.0);
                        out.psi_norm[k] = 0.0;
                        out.e_norm[k] = 0.0;
                        out.u_norm[k] = 0.0;
                        out.loss[k] = l;
                    }
                }
                states
                    .filter(|s| s.ncols() == free_times.len())
                    .map(|s| s.columns(free_times.len() - 1, 1).into_owned())
            })
            .collect()
    } else {
        let start = free.initial_state();
        (0..batch)
            .map(|j| Some(start.columns(j, 1).into_owned()))
            .collect()
    };

    // Controlled segment over [t_on, t_end], in shifted time, of the samples that reached t_on.
    let reached: Vec<usize> = (0..batch).filter(|&j| phi_on[j].is_some()).collect();
    if reached.is_empty() {
        return Ok(outs);
    }
    progress::report("simulate: controlled segment", 1, 2);
    let phis: Vec<DMatrix<f64>> = reached.iter().filter_map(|&j| phi_on[j].take()).collect();
    let columns: Vec<_> = phis.iter().map(|p| p.column(0)).collect();
    let part = segment.select_samples(&reached);
    let z0 = part.start(&DMatrix::from_columns(&columns))?;
    let shifted: Vec<f64> = times[k_on..].iter().map(|t| t - t_on).collect();
    let end = *shifted.last().expect("t_on < last time");
    let mut ctrl_opts = opts.clone();
    ctrl_opts.stop.max_time = end;
    let recs = solve_trajectories(&part, &z0, &ctrl_opts, &shifted);
    for (&j, rec) in reached.iter().zip(recs.records) {
        let out = &mut outs[j];
        out.controlled = Some(SegmentRecord::new(&rec, t_on, t_on + end, shifted.len()));
        let Some(traj) = rec.trajectory else {
            continue;
        };
        // All recorded points of the sample at once: the sample repeated, one column per point.
        let points = traj.states.ncols();
        let repeated = vec![j; points];
        let (one, seg) = (
            sys.select_samples(&repeated),
            segment.select_samples(&repeated),
        );
        let (phi, u_i, psi) = seg.read(&traj.states);
        let y = phi.rows_range(r_rows.clone()).into_owned();
        let e = psi.rows_range(c_rows.clone()).into_owned();
        let u = match (readout, &u_i, one.controller()) {
            (true, _, _) => psi.rows_range(r_rows.clone()).into_owned(),
            (false, Some(u_i), Some(c)) => u_i * c.k_i - one.loss_gradient(&phi) * c.k_p,
            _ => DMatrix::from_element(n_y, points, f64::NAN),
        };
        let losses = loss.values(&y, one.targets());
        for (c, &l) in losses.iter().enumerate().take(points) {
            let k = k_on + c;
            out.v
                .set_column(k, &phi.column(c).rows_range(c_rows.clone()));
            out.y.set_column(k, &y.column(c));
            match &u_i {
                Some(u_i) => out.u_i.set_column(k, &u_i.column(c)),
                None => out.u_i.column_mut(k).fill(f64::NAN),
            }
            out.u.set_column(k, &u.column(c));
            out.e.set_column(k, &e.column(c));
            out.psi_norm[k] = psi.column(c).norm();
            out.e_norm[k] = e.column(c).norm();
            out.u_norm[k] = u.column(c).norm();
            out.loss[k] = l;
        }
    }
    Ok(outs)
}
