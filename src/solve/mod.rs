//! Relaxation to a steady state: integrate `tau dz/dt = r(z)` until the vector field is
//! small, with diffsol's adaptive methods or fixed-step forward Euler. Every solve
//! returns a [`SteadyState`] record; non-convergence is a reported outcome, never a panic.

use crate::numerics::real::Real;
use crate::numerics::simd::widest_fn;
use diffsol::{
    NalgebraLU, NalgebraMat, NalgebraVec, OdeBuilder, OdeEquations, OdeSolverMethod,
    OdeSolverStopReason, VectorCommon,
};
use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::cell::Cell;

mod accelerated;
mod euler;
mod krylov;
mod settings;
mod tsit45_batch;

pub use euler::{forward_euler, EulerField};
pub use krylov::{rightmost_ritz_values, spectral_abscissa};
pub use settings::{
    AcceleratedSettings, AdaptiveSettings, AndersonSettings, EulerSettings, Fallback,
    FlowCertificate, NewtonKrylovSettings, Precision, SolverMethod, SolverSettings, StabilityCheck,
    StopCriterion, StopNorm,
};

/// `dz -> (dr/dz) dz` at a fixed z.
pub type JacobianAction<'a> = Box<dyn Fn(&DMatrix<f64>) -> DMatrix<f64> + 'a>;

/// A vector field `r(z) = tau * dz/dt` on a batch of states z (dim x B, one column per
/// sample, each column evolving on its own) with its exact Jacobian action.
pub trait VectorField: Sync {
    /// Dimension of z.
    fn dim(&self) -> usize;
    /// Number of samples B (columns of z).
    fn batch(&self) -> usize;
    /// The field of the samples `columns` only (in that order).
    fn select_samples(&self, columns: &[usize]) -> Self
    where
        Self: Sized;
    /// Time constant of each component.
    fn time_constants(&self) -> Vec<f64>;
    /// `r(z)`.
    fn residual(&self, z: &DMatrix<f64>) -> DMatrix<f64>;
    /// `r(z)` written into `r` (dim x B): the iteration loops' form, which a field may
    /// implement without temporaries (default: a copy of [`VectorField::residual`]).
    fn residual_into(&self, z: &DMatrix<f64>, r: &mut DMatrix<f64>) {
        r.copy_from(&self.residual(z));
    }
    /// `(dr/dz) dz`.
    fn residual_jvp(&self, z: &DMatrix<f64>, dz: &DMatrix<f64>) -> DMatrix<f64>;
    /// The Jacobian action at a fixed z for many dz (a field may precompute what does not
    /// depend on dz).
    fn jacobian_at<'a>(&'a self, z: &DMatrix<f64>) -> JacobianAction<'a> {
        let z = z.clone();
        Box::new(move |dz| self.residual_jvp(&z, dz))
    }
    /// True when an accelerated solver's equilibrium of this field must be certified to be
    /// the end of its flow ([`FlowCertificate`]). False for a field with one equilibrium
    /// (RBP's linear adjoint) and for one whose equilibrium is not defined by its flow
    /// (LCP-EBD's descent on E_alpha: a minimiser, which the stability check already tells
    /// from saddles).
    fn certify_against_flow(&self) -> bool {
        true
    }
    /// Optional: forward Euler of the samples of `z0` in single precision
    /// (`solver.precision = "f32"`, see [`forward_euler`]); None: this field has no
    /// single-precision form.
    fn euler_in_single_precision(
        &self,
        _z0: &DMatrix<f64>,
        _stop: &StopCriterion,
        _euler: &EulerSettings,
    ) -> Option<Vec<SteadyState>> {
        None
    }
}

/// Why a solve stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Termination {
    /// The vector field met the tolerance.
    Converged,
    /// `max_time` was reached first.
    MaxTime,
    /// `max_steps` were taken first.
    MaxSteps,
    /// The state or the field became non-finite or exceeded the divergence bound.
    Diverged,
    /// The integrator failed (message from diffsol).
    SolverError(String),
    /// An accelerated solver stopped improving (no progress over many iterations, or no
    /// step of its line search reduced the residual).
    Stalled,
    /// An accelerated solver found an equilibrium that the flow does not settle on: the
    /// Jacobian has an eigenvalue (Ritz value) with positive real part (`max_real`).
    Unstable { max_real: f64 },
    /// A continuation in the control strength could not continue the branch past strength
    /// `lambda` (in [0, 1)) even at its minimum step: a fold (saddle-node) of the branch, or
    /// the branch lost stability there. The state is the last point of the branch.
    Fold { lambda: f64 },
    /// An accelerated solver's equilibrium that the flow from the same start was not seen
    /// to reach (the flow certificate, [`FlowCertificate`]): a record's `fallback_from`.
    /// `distance`: `max_i |z_i - z*_i| / (1 + |z*_i|)` between the flow's equilibrium and
    /// the candidate z* (infinite when the flow or its Newton polish did not converge).
    Uncertified { distance: f64 },
}

impl Termination {
    /// Short name for tables.
    pub fn name(&self) -> &'static str {
        match self {
            Termination::Converged => "converged",
            Termination::MaxTime => "max-time",
            Termination::MaxSteps => "max-steps",
            Termination::Diverged => "diverged",
            Termination::SolverError(_) => "solver-error",
            Termination::Stalled => "stalled",
            Termination::Unstable { .. } => "unstable",
            Termination::Fold { .. } => "fold",
            Termination::Uncertified { .. } => "uncertified",
        }
    }
}

/// States recorded at requested output times (columns).
#[derive(Clone, Debug, PartialEq)]
pub struct Trajectory {
    pub times: Vec<f64>,
    pub states: DMatrix<f64>,
}

/// The record of one steady-state solve.
#[derive(Clone, Debug)]
pub struct SteadyState {
    /// Final state (dim x 1).
    pub state: DMatrix<f64>,
    /// Why the solve stopped.
    pub termination: Termination,
    /// `max_i |r_i(z)|` at the final state.
    pub residual: f64,
    /// `max_i |r_i| / (atol + rtol |z_i|)`: converged when <= 1.
    pub scaled_residual: f64,
    /// Time reached (0 for the accelerated solvers, which do not follow the flow).
    pub time: f64,
    /// Steps taken (integrator steps, Anderson iterations or Newton steps).
    pub steps: usize,
    /// Evaluations of the vector field (including convergence checks), over all attempts.
    pub rhs_evals: usize,
    /// Jacobian-vector products (Newton-Krylov, stability checks), over all attempts.
    pub jvp_evals: usize,
    /// The method that produced `state`.
    pub solver: SolverMethod,
    /// When a fallback produced `state`: how the accelerated solver had ended.
    pub fallback_from: Option<Termination>,
    /// The flow certificate of an accelerated solver's equilibrium ([`FlowCertificate`]):
    /// None when not checked, `Some(false)` when rejected (then the fallback's record).
    pub flow_certified: Option<bool>,
    /// States at the requested output times that were reached.
    pub trajectory: Option<Trajectory>,
}

impl SteadyState {
    /// True when the solve converged.
    pub fn converged(&self) -> bool {
        self.termination == Termination::Converged
    }
}

/// Integrates `tau dz/dt = r(z)` for one sample (`field.batch() == 1`) from `z0` until
/// `|r_i| <= atol + rtol |z_i|` for all i, `max_time` or `max_steps`. With output times, the
/// convergence test starts only after the last one, so the trajectory is complete. An
/// accelerated method solves for the equilibrium instead (with its fallback; no
/// trajectory). Settings must be valid ([`SolverSettings::validate`]).
pub fn solve_steady_state<F: VectorField>(
    field: &F,
    z0: &DMatrix<f64>,
    settings: &SolverSettings,
    output_times: &[f64],
) -> SteadyState {
    let monitor = Monitor::new(field, &settings.stop, settings.method, output_times);
    match settings.method {
        SolverMethod::Euler => euler(z0, monitor, &settings.euler),
        SolverMethod::Anderson | SolverMethod::NewtonKrylov => {
            let mut batch = solve_batch(field, z0, settings);
            batch.records.remove(0)
        }
        _ => with_diffsol(z0, monitor, &settings.adaptive),
    }
}

/// Per-sample solves of a batch and their final states.
#[derive(Clone, Debug)]
pub struct BatchSteadyState {
    /// Final states, dim x B.
    pub states: DMatrix<f64>,
    /// One record per sample.
    pub records: Vec<SteadyState>,
}

impl BatchSteadyState {
    /// Fraction of samples whose solve converged.
    pub fn fraction_converged(&self) -> f64 {
        let n = self.records.iter().filter(|r| r.converged()).count();
        n as f64 / self.records.len().max(1) as f64
    }

    /// Largest final residual `max_i |r_i|` over the batch (NaN if any is NaN).
    pub fn max_residual(&self) -> f64 {
        self.records.iter().map(|r| r.residual).fold(0.0, |a, b| {
            if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.max(b)
            }
        })
    }

    /// Samples whose accelerated equilibrium the flow certificate accepted.
    pub fn certified(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.flow_certified == Some(true))
            .count()
    }

    /// Samples whose accelerated equilibrium the flow certificate rejected.
    pub fn uncertified(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.flow_certified == Some(false))
            .count()
    }

    /// Mean number of steps per sample.
    pub fn mean_steps(&self) -> f64 {
        let total: usize = self.records.iter().map(|r| r.steps).sum();
        total as f64 / self.records.len().max(1) as f64
    }
}

/// Solves every sample (column of `z0`) of a batched field. The adaptive integrators solve
/// each sample on its own (samples never share step sizes); forward Euler and the
/// accelerated solvers iterate fixed chunks of `accelerated.chunk` samples together
/// (batched products; a sample that has stopped costs no more work), and the accelerated
/// ones hand samples they could not settle to `accelerated.fallback`.
/// Samples and chunks run in parallel on the current rayon pool; the result does not
/// depend on the number of threads.
pub fn solve_batch<F: VectorField>(
    field: &F,
    z0: &DMatrix<f64>,
    settings: &SolverSettings,
) -> BatchSteadyState {
    let b = z0.ncols();
    let column = |j: usize| z0.columns(j, 1).into_owned();
    let one = |j: usize, s: &SolverSettings| {
        solve_steady_state(&field.select_samples(&[j]), &column(j), s, &[])
    };
    let columns: Vec<usize> = (0..b).collect();
    let chunks: Vec<&[usize]> = columns.chunks(settings.accelerated.chunk).collect();
    let in_chunks = |solve: &(dyn Fn(&F, &DMatrix<f64>) -> Vec<SteadyState> + Sync)| {
        chunks
            .par_iter()
            .flat_map_iter(|cols| solve(&field.select_samples(cols), &z0.select_columns(*cols)))
            .collect::<Vec<SteadyState>>()
    };
    let (stop, euler) = (&settings.stop, &settings.euler);
    let records: Vec<SteadyState> = if settings.method == SolverMethod::Euler {
        in_chunks(&|f, z| {
            let single = (settings.precision == Precision::F32)
                .then(|| f.euler_in_single_precision(z, stop, euler))
                .flatten();
            single.unwrap_or_else(|| forward_euler(f, z, stop, euler))
        })
    } else if settings.method.follows_flow() {
        (0..b).into_par_iter().map(|j| one(j, settings)).collect()
    } else {
        let first = in_chunks(&|f, z| accelerated::solve(f, z, settings));
        let fallback = settings.accelerated.fallback.method();
        let fallback = fallback.map(|method| settings.with_method(method));
        let certify = settings.accelerated.certify.enabled && field.certify_against_flow();
        first
            .into_par_iter()
            .enumerate()
            .map(|(j, mut rec)| {
                if certify && rec.converged() {
                    let sample = field.select_samples(&[j]);
                    certify_flow(&sample, &column(j), &mut rec, settings);
                }
                match &fallback {
                    Some(fb) if !rec.converged() => {
                        let mut again = one(j, fb);
                        again.rhs_evals += rec.rhs_evals;
                        again.jvp_evals += rec.jvp_evals;
                        again.fallback_from = Some(rec.termination);
                        again.flow_certified = rec.flow_certified;
                        again
                    }
                    _ => rec,
                }
            })
            .collect()
    };
    let columns: Vec<_> = records.iter().map(|r| r.state.column(0)).collect();
    BatchSteadyState {
        states: DMatrix::from_columns(&columns),
        records,
    }
}

/// Integrates every sample (column of `z0`) from t = 0 as [`solve_steady_state`] does for one,
/// recording `output_times`, with `settings.integrator()`: Tsit45 integrates fixed chunks of
/// `accelerated.chunk` samples together (each sample with its own step sizes and stopping
/// test, one batched residual per stage, see `tsit45_batch`), the other integrators sample by
/// sample. Chunks and samples run in parallel on the current rayon pool; the result does not
/// depend on the number of threads.
pub fn solve_trajectories<F: VectorField>(
    field: &F,
    z0: &DMatrix<f64>,
    settings: &SolverSettings,
    output_times: &[f64],
) -> BatchSteadyState {
    let settings = settings.integrator();
    let b = z0.ncols();
    let records: Vec<SteadyState> = if settings.method == SolverMethod::Tsit45 {
        let columns: Vec<usize> = (0..b).collect();
        let chunks: Vec<&[usize]> = columns.chunks(settings.accelerated.chunk.max(1)).collect();
        chunks
            .par_iter()
            .flat_map_iter(|cols| {
                let (stop, adaptive) = (&settings.stop, &settings.adaptive);
                let (f, z) = (field.select_samples(cols), z0.select_columns(*cols));
                tsit45_batch::solve(&f, &z, stop, adaptive, output_times)
            })
            .collect()
    } else {
        (0..b)
            .into_par_iter()
            .map(|j| {
                let sample = field.select_samples(&[j]);
                let start = z0.columns(j, 1).into_owned();
                solve_steady_state(&sample, &start, &settings, output_times)
            })
            .collect()
    };
    let columns: Vec<_> = records.iter().map(|r| r.state.column(0)).collect();
    BatchSteadyState {
        states: DMatrix::from_columns(&columns),
        records,
    }
}

/// The flow certificate ([`FlowCertificate`]) of the converged record `rec` of one sample
/// started at `z0`: sets `rec.flow_certified`, and `rec.termination` to `Uncertified` on a
/// rejection; the work is added to its counters.
fn certify_flow<F: VectorField>(
    field: &F,
    z0: &DMatrix<f64>,
    rec: &mut SteadyState,
    settings: &SolverSettings,
) {
    let tol = settings.accelerated.certify.tolerance;
    let mut loose = settings.integrator();
    loose.stop.atol = tol;
    loose.stop.rtol = tol;
    loose.adaptive.rtol = tol * 1e-2;
    loose.adaptive.atol = tol * 1e-3;
    let flow = solve_steady_state(field, z0, &loose, &[]);
    rec.rhs_evals += flow.rhs_evals;
    rec.jvp_evals += flow.jvp_evals;
    let distance = if flow.converged() {
        let newton = settings.with_method(SolverMethod::NewtonKrylov);
        let end = accelerated::solve(field, &flow.state, &newton).remove(0);
        rec.rhs_evals += end.rhs_evals;
        rec.jvp_evals += end.jvp_evals;
        if end.converged() {
            let apart = end.state.iter().zip(rec.state.iter());
            apart.fold(0.0f64, |d, (a, b)| d.max((a - b).abs() / (1.0 + b.abs())))
        } else {
            f64::INFINITY
        }
    } else {
        f64::INFINITY
    };
    let certified = distance <= tol; // false for NaN
    rec.flow_certified = Some(certified);
    if !certified {
        rec.termination = Termination::Uncertified { distance };
    }
}

/// `(max |r_i|, size)` of one state, where the steady-state test passes when `size <= 1`:
/// `size = max_i |r_i| / (atol + rtol |z_i|)` ([`StopNorm::Entrywise`]) or
/// `||r||_2 / (atol + rtol ||z||_2)` ([`StopNorm::L2`]); both NaN when r is not finite.
/// Computed in the iterations' scalar (f32 states: in f32).
pub(crate) fn residual_size<T: StopScalar>(z: &[T], r: &[T], stop: &StopCriterion) -> (f64, f64) {
    match stop.norm {
        StopNorm::Entrywise => T::entrywise_size(z, r, stop),
        StopNorm::L2 => T::l2_size(z, r, stop),
    }
}

/// True when the residual is not finite (`abs` NaN) or a state entry is not finite or beyond
/// `divergence_bound`.
pub(crate) fn diverged<T: StopScalar>(z: &[T], abs: f64, stop: &StopCriterion) -> bool {
    abs.is_nan() || !T::within(z, stop.divergence_bound)
}

/// A scalar the steady-state test reads states in: its passes over a state, compiled for the
/// widest vector unit ([`residual_size`], [`diverged`]).
pub trait StopScalar: Real {
    /// [`StopNorm::Entrywise`]'s `(max |r_i|, max |r_i| / (atol + rtol |z_i|))`.
    fn entrywise_size(z: &[Self], r: &[Self], stop: &StopCriterion) -> (f64, f64);
    /// [`StopNorm::L2`]'s `(max |r_i|, ||r||_2 / (atol + rtol ||z||_2))`.
    fn l2_size(z: &[Self], r: &[Self], stop: &StopCriterion) -> (f64, f64);
    /// Every entry finite and within `bound` in magnitude.
    fn within(z: &[Self], bound: f64) -> bool;
}

impl StopScalar for f64 {
    fn entrywise_size(z: &[f64], r: &[f64], stop: &StopCriterion) -> (f64, f64) {
        entrywise_f64(z, r, stop)
    }
    fn l2_size(z: &[f64], r: &[f64], stop: &StopCriterion) -> (f64, f64) {
        l2_f64(z, r, stop)
    }
    fn within(z: &[f64], bound: f64) -> bool {
        within_f64(z, bound)
    }
}

impl StopScalar for f32 {
    fn entrywise_size(z: &[f32], r: &[f32], stop: &StopCriterion) -> (f64, f64) {
        entrywise_f32(z, r, stop)
    }
    fn l2_size(z: &[f32], r: &[f32], stop: &StopCriterion) -> (f64, f64) {
        l2_f32(z, r, stop)
    }
    fn within(z: &[f32], bound: f64) -> bool {
        within_f32(z, bound)
    }
}

widest_fn! {
fn entrywise_f64(z: &[f64], r: &[f64], stop: &StopCriterion) -> (f64, f64) {
    entrywise_residual_size(z, r, stop)
}
}
widest_fn! {
fn entrywise_f32(z: &[f32], r: &[f32], stop: &StopCriterion) -> (f64, f64) {
    entrywise_residual_size(z, r, stop)
}
}
widest_fn! {
fn l2_f64(z: &[f64], r: &[f64], stop: &StopCriterion) -> (f64, f64) {
    l2_residual_size(z, r, stop)
}
}
widest_fn! {
fn l2_f32(z: &[f32], r: &[f32], stop: &StopCriterion) -> (f64, f64) {
    l2_residual_size(z, r, stop)
}
}
widest_fn! {
fn within_f64(z: &[f64], bound: f64) -> bool {
    within_bound(z, bound)
}
}
widest_fn! {
fn within_f32(z: &[f32], bound: f64) -> bool {
    within_bound(z, bound)
}
}

/// `(max |r_i|, max |r_i| / (atol + rtol |z_i|))`; NaN when r is not finite.
#[inline(always)]
fn entrywise_residual_size<T: Real>(z: &[T], r: &[T], stop: &StopCriterion) -> (f64, f64) {
    let (atol, rtol, zero) = (T::round_from(stop.atol), T::round_from(stop.rtol), T::ZERO);
    // LANES independent maxima, so that the loop vectorizes (a select, not f64::max).
    let (mut abs, mut scaled, mut finite) = ([zero; LANES], [zero; LANES], [true; LANES]);
    let mut lane = |k: usize, ri: T, zi: T| {
        let a = ri.magnitude();
        finite[k] &= a <= T::LARGEST;
        abs[k] = if a > abs[k] { a } else { abs[k] };
        let s = a / (atol + rtol * zi.magnitude());
        scaled[k] = if s > scaled[k] { s } else { scaled[k] };
    };
    let (rc, zc) = (r.chunks_exact(LANES), z.chunks_exact(LANES));
    let (rr, zr) = (rc.remainder(), zc.remainder());
    for (rc, zc) in rc.zip(zc) {
        for k in 0..LANES {
            lane(k, rc[k], zc[k]);
        }
    }
    for (k, (&ri, &zi)) in rr.iter().zip(zr).enumerate() {
        lane(k, ri, zi);
    }
    if finite.iter().all(|&f| f) {
        let max = |v: [T; LANES]| v.into_iter().fold(0.0f64, |m, x| m.max(x.widen()));
        (max(abs), max(scaled))
    } else {
        (f64::NAN, f64::NAN)
    }
}

/// `(max |r_i|, ||r||_2 / (atol + rtol ||z||_2))`; NaN when r is not finite (the squares
/// summed in T, the lanes' sums in f64).
#[inline(always)]
fn l2_residual_size<T: Real>(z: &[T], r: &[T], stop: &StopCriterion) -> (f64, f64) {
    let zero = T::ZERO;
    let (mut abs, mut rr, mut zz, mut finite) =
        ([zero; LANES], [zero; LANES], [zero; LANES], [true; LANES]);
    let mut lane = |k: usize, ri: T, zi: T| {
        let a = ri.magnitude();
        finite[k] &= a <= T::LARGEST;
        abs[k] = if a > abs[k] { a } else { abs[k] };
        rr[k] += ri * ri;
        zz[k] += zi * zi;
    };
    let (rc, zc) = (r.chunks_exact(LANES), z.chunks_exact(LANES));
    let (rrem, zrem) = (rc.remainder(), zc.remainder());
    for (rc, zc) in rc.zip(zc) {
        for k in 0..LANES {
            lane(k, rc[k], zc[k]);
        }
    }
    for (k, (&ri, &zi)) in rrem.iter().zip(zrem).enumerate() {
        lane(k, ri, zi);
    }
    if finite.iter().all(|&f| f) {
        let max = abs.into_iter().fold(0.0f64, |m, x| m.max(x.widen()));
        let (rr, zz) = (rr.map(T::widen), zz.map(T::widen));
        let (r2, z2): (f64, f64) = (rr.iter().sum(), zz.iter().sum());
        (max, r2.sqrt() / (stop.atol + stop.rtol * z2.sqrt()))
    } else {
        (f64::NAN, f64::NAN)
    }
}

/// Independent accumulators of the elementwise reductions.
const LANES: usize = 8;

/// Every entry of z finite and `|z_i| <= bound`.
#[inline(always)]
fn within_bound<T: Real>(z: &[T], bound: f64) -> bool {
    let bound = T::round_from(bound);
    let mut within = [true; LANES];
    let chunks = z.chunks_exact(LANES);
    for (k, v) in chunks.remainder().iter().enumerate() {
        within[k] &= v.magnitude() < T::INFINITY && v.magnitude() <= bound;
    }
    for c in chunks {
        for k in 0..LANES {
            within[k] &= c[k].magnitude() < T::INFINITY && c[k].magnitude() <= bound;
        }
    }
    within.iter().all(|&w| w)
}

/// Convergence test, divergence test, output recording and counters shared by all methods.
struct Monitor<'f, F: VectorField> {
    field: &'f F,
    stop: &'f StopCriterion,
    /// The method, for the record.
    method: SolverMethod,
    output_times: &'f [f64],
    recorded: Vec<DMatrix<f64>>,
    evals: Cell<usize>,
}

/// Outcome of checking a state.
enum Check {
    Continue,
    Stop(Termination, f64, f64),
}

impl<'f, F: VectorField> Monitor<'f, F> {
    fn new(
        field: &'f F,
        stop: &'f StopCriterion,
        method: SolverMethod,
        output_times: &'f [f64],
    ) -> Self {
        Monitor {
            field,
            stop,
            method,
            output_times,
            recorded: Vec::new(),
            evals: Cell::new(0),
        }
    }

    fn residual(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        self.evals.set(self.evals.get() + 1);
        self.field.residual(z)
    }

    /// (max |r_i|, max |r_i| / (atol + rtol |z_i|)), NaN-propagating.
    fn measure(&self, z: &DMatrix<f64>, r: &DMatrix<f64>) -> (f64, f64) {
        residual_size(z.as_slice(), r.as_slice(), self.stop)
    }

    fn all_outputs_recorded(&self) -> bool {
        self.recorded.len() >= self.output_times.len()
    }

    /// Checks the state z (with residual r) reached at time t after `steps` steps.
    fn check(&self, z: &DMatrix<f64>, r: &DMatrix<f64>, t: f64, steps: usize) -> Check {
        let (abs, scaled) = self.measure(z, r);
        if diverged(z.as_slice(), abs, self.stop) {
            Check::Stop(Termination::Diverged, abs, scaled)
        } else if scaled <= 1.0 && self.all_outputs_recorded() {
            Check::Stop(Termination::Converged, abs, scaled)
        } else if t >= self.stop.max_time {
            Check::Stop(Termination::MaxTime, abs, scaled)
        } else if steps >= self.stop.max_steps {
            Check::Stop(Termination::MaxSteps, abs, scaled)
        } else {
            Check::Continue
        }
    }

    fn finish(
        self,
        state: DMatrix<f64>,
        termination: Termination,
        (residual, scaled_residual): (f64, f64),
        time: f64,
        steps: usize,
    ) -> SteadyState {
        let trajectory = (!self.output_times.is_empty()).then(|| Trajectory {
            times: self.output_times[..self.recorded.len()].to_vec(),
            states: if self.recorded.is_empty() {
                DMatrix::zeros(state.nrows(), 0)
            } else {
                DMatrix::from_columns(
                    &self
                        .recorded
                        .iter()
                        .map(|c| c.column(0))
                        .collect::<Vec<_>>(),
                )
            },
        });
        SteadyState {
            state,
            termination,
            residual,
            scaled_residual,
            time,
            steps,
            rhs_evals: self.evals.get(),
            jvp_evals: 0,
            solver: self.method,
            fallback_from: None,
            flow_certified: None,
            trajectory,
        }
    }
}

/// Forward Euler `z += dt r(z) / tau` from `z0`.
fn euler<F: VectorField>(
    z0: &DMatrix<f64>,
    mut monitor: Monitor<'_, F>,
    settings: &EulerSettings,
) -> SteadyState {
    let field = monitor.field;
    let tau = DMatrix::from_vec(field.dim(), 1, field.time_constants());
    let mut z = z0.clone();
    let (mut t, mut steps) = (0.0, 0usize);
    record_euler(&mut monitor, &z, &z, t, t);
    loop {
        let r = monitor.residual(&z);
        if let Check::Stop(term, abs, scaled) = monitor.check(&z, &r, t, steps) {
            return monitor.finish(z, term, (abs, scaled), t, steps);
        }
        let next = &z + r.component_div(&tau) * settings.dt;
        steps += 1;
        // From the step count, so that rounding does not accumulate over long runs.
        let t_next = steps as f64 * settings.dt;
        record_euler(&mut monitor, &z, &next, t, t_next);
        z = next;
        t = t_next;
    }
}

/// Records output times in (t0, t1] (and t = t0 at the start) by linear interpolation.
fn record_euler<F: VectorField>(
    monitor: &mut Monitor<'_, F>,
    z0: &DMatrix<f64>,
    z1: &DMatrix<f64>,
    t0: f64,
    t1: f64,
) {
    while let Some(&to) = monitor.output_times.get(monitor.recorded.len()) {
        if to > t1 {
            break;
        }
        let w = if t1 > t0 { (to - t0) / (t1 - t0) } else { 0.0 };
        monitor
            .recorded
            .push(z0 * (1.0 - w.max(0.0)) + z1 * w.max(0.0));
    }
}

/// The adaptive diffsol integrator `monitor.method` from `z0`.
fn with_diffsol<F: VectorField>(
    z0: &DMatrix<f64>,
    monitor: Monitor<'_, F>,
    settings: &AdaptiveSettings,
) -> SteadyState {
    let (field, method) = (monitor.field, monitor.method);
    let n = field.dim();
    let tau = field.time_constants();
    let evals = Cell::new(0usize);
    let jvps = Cell::new(0usize);
    let rhs = |z: &[f64], _p: &[f64], _t: f64, out: &mut [f64]| {
        evals.set(evals.get() + 1);
        let r = field.residual(&DMatrix::from_column_slice(n, 1, z));
        for ((o, ri), ti) in out.iter_mut().zip(r.iter()).zip(&tau) {
            *o = ri / ti;
        }
    };
    let jac = |z: &[f64], _p: &[f64], _t: f64, v: &[f64], out: &mut [f64]| {
        jvps.set(jvps.get() + 1);
        let zm = DMatrix::from_column_slice(n, 1, z);
        let jv = field.residual_jvp(&zm, &DMatrix::from_column_slice(n, 1, v));
        for ((o, ji), ti) in out.iter_mut().zip(jv.iter()).zip(&tau) {
            *o = ji / ti;
        }
    };
    let start = z0.as_slice().to_vec();
    let problem = OdeBuilder::<NalgebraMat<f64>>::new()
        .rtol(settings.rtol)
        .atol([settings.atol])
        .rhs_implicit(rhs, jac)
        .init(move |_p, _t, y| y.copy_from_slice(&start), n)
        .build();
    let taken = monitor;
    let fail = |m: Monitor<'_, F>, e: String| {
        let mut rec = m.finish(
            z0.clone(),
            Termination::SolverError(e),
            (f64::NAN, f64::NAN),
            0.0,
            0,
        );
        rec.rhs_evals += evals.get();
        rec.jvp_evals += jvps.get();
        rec
    };
    let problem = match problem {
        Ok(p) => p,
        Err(e) => return fail(taken, e.to_string()),
    };
    let mut record = match method {
        SolverMethod::Tsit45 => match problem.tsit45() {
            Ok(s) => drive(s, taken, settings),
            Err(e) => fail(taken, e.to_string()),
        },
        SolverMethod::Bdf => match problem.bdf::<NalgebraLU<f64>>() {
            Ok(s) => drive(s, taken, settings),
            Err(e) => fail(taken, e.to_string()),
        },
        SolverMethod::Esdirk34 => match problem.esdirk34::<NalgebraLU<f64>>() {
            Ok(s) => drive(s, taken, settings),
            Err(e) => fail(taken, e.to_string()),
        },
        SolverMethod::TrBdf2 => match problem.tr_bdf2::<NalgebraLU<f64>>() {
            Ok(s) => drive(s, taken, settings),
            Err(e) => fail(taken, e.to_string()),
        },
        SolverMethod::Euler
        | SolverMethod::Anderson
        | SolverMethod::NewtonKrylov
        | SolverMethod::AdamOnState => {
            unreachable!("not a diffsol method")
        }
    };
    record.rhs_evals += evals.get();
    record.jvp_evals += jvps.get();
    record
}

/// Steps a diffsol solver until the monitor stops it.
fn drive<'a, Eqn, S, F>(
    mut solver: S,
    mut monitor: Monitor<'_, F>,
    settings: &AdaptiveSettings,
) -> SteadyState
where
    Eqn: OdeEquations<T = f64, V = NalgebraVec<f64>> + 'a,
    S: OdeSolverMethod<'a, Eqn>,
    F: VectorField,
{
    let column = |v: &NalgebraVec<f64>| -> DMatrix<f64> { v.inner().clone() };
    let max_time = monitor.stop.max_time;
    if settings.initial_step > 0.0 {
        *solver.state_mut().h = settings.initial_step;
    }
    if let Err(e) = solver.set_stop_time(max_time) {
        let z = column(solver.state().y);
        return monitor.finish(
            z,
            Termination::SolverError(e.to_string()),
            (f64::NAN, f64::NAN),
            0.0,
            0,
        );
    }
    let mut steps = 0usize;
    // Output times at t = 0.
    while monitor.output_times.get(monitor.recorded.len()) == Some(&0.0) {
        monitor.recorded.push(column(solver.state().y));
    }
    loop {
        let stepped = solver.step();
        steps += 1;
        let t = solver.state().t;
        let z = column(solver.state().y);
        if let Err(e) = stepped {
            let (abs, scaled) = {
                let r = monitor.residual(&z);
                monitor.measure(&z, &r)
            };
            return monitor.finish(
                z,
                Termination::SolverError(e.to_string()),
                (abs, scaled),
                t,
                steps,
            );
        }
        while let Some(&to) = monitor.output_times.get(monitor.recorded.len()) {
            if to > t {
                break;
            }
            match solver.interpolate(to) {
                Ok(v) => monitor.recorded.push(column(&v)),
                Err(_) => monitor.recorded.push(z.clone()),
            }
        }
        let reached_stop = matches!(stepped, Ok(OdeSolverStopReason::TstopReached));
        let r = monitor.residual(&z);
        match monitor.check(&z, &r, if reached_stop { max_time } else { t }, steps) {
            Check::Continue => {}
            Check::Stop(term, abs, scaled) => {
                return monitor.finish(z, term, (abs, scaled), t, steps)
            }
        }
    }
}

/// Refines a steady state by Newton's method on `r(z) = 0`, with the dense Jacobian
/// assembled column by column from [`VectorField::residual_jvp`] (dim products, then an LU
/// solve): for small systems and checks that need the equilibrium to machine precision.
/// Stops when `max |r|` no longer decreases or after `max_iters` iterations.
pub fn newton_polish<F: VectorField>(
    field: &F,
    z: &DMatrix<f64>,
    max_iters: usize,
) -> DMatrix<f64> {
    let n = field.dim();
    let mut z = z.clone();
    let mut r = field.residual(&z);
    for _ in 0..max_iters {
        let mut jac = DMatrix::zeros(n, n);
        for k in 0..n {
            let mut e = DMatrix::zeros(n, 1);
            e[k] = 1.0;
            jac.set_column(k, &field.residual_jvp(&z, &e).column(0));
        }
        let Some(step) = jac.lu().solve(&r) else {
            break;
        };
        let next = &z - step;
        let r_next = field.residual(&next);
        let improved = r_next.amax() < r.amax(); // false for NaN
        if !improved {
            break;
        }
        z = next;
        r = r_next;
    }
    z
}
