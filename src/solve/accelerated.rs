//! The accelerated equilibrium solvers on one chunk of samples: Anderson acceleration of
//! the Euler map and matrix-free Newton-Krylov. Each iteration evaluates the residual (and
//! the Jacobian action) of all samples still running in one batched call; a sample leaves
//! the batch as soon as it converges or fails. Neither follows the flow, so an equilibrium
//! they find is checked for stability before it is accepted.

use super::krylov::{gmres, rightmost_ritz_values};
use super::{
    diverged, residual_size, AndersonSettings, NewtonKrylovSettings, SolverMethod, SolverSettings,
    StabilityCheck, SteadyState, StopCriterion, StopScalar, Termination, VectorField,
};
use nalgebra::{DMatrix, DVector};

/// Solves every column of `z0` with `settings.method` (Anderson or Newton-Krylov), then
/// checks the stability of the equilibria found when the stability check is on.
pub(super) fn solve<F: VectorField>(
    field: &F,
    z0: &DMatrix<f64>,
    settings: &SolverSettings,
) -> Vec<SteadyState> {
    let limits = Limits {
        stop: &settings.stop,
        max_iterations: settings.accelerated.max_iterations,
        stall_after: stall_after(&settings.anderson),
        max_time: None,
    };
    let mut records = match settings.method {
        SolverMethod::Anderson => {
            let lane = |z| Anderson::new(z, &settings.anderson);
            iterate(field, z0, &limits, SolverMethod::Anderson, lane)
        }
        SolverMethod::NewtonKrylov => newton_krylov(field, z0, &limits, &settings.newton_krylov),
        _ => unreachable!("not an accelerated method"),
    };
    let stability = &settings.accelerated.stability;
    if stability.enabled {
        check_stability(field, &mut records, stability);
    }
    records
}

/// When an iterative solve of one sample ends: the stopping criterion, the iteration cap,
/// the stall window and, for a fixed-step flow, the time limit.
pub(super) struct Limits<'s> {
    pub(super) stop: &'s StopCriterion,
    pub(super) max_iterations: usize,
    /// Iterations without a new best residual after which a sample counts as stalled.
    pub(super) stall_after: usize,
    /// `(dt, max_time)`: the solve ends when `iterations * dt >= max_time`.
    pub(super) max_time: Option<(f64, f64)>,
}

/// Iterations without a new best residual after which Anderson clears its history.
fn restart_after(anderson: &AndersonSettings) -> usize {
    2 * anderson.memory.max(5)
}

/// The stall window `10 max(m, 5)`, set by Anderson's memory m for both accelerated
/// solvers (the config has one key for it).
fn stall_after(anderson: &AndersonSettings) -> usize {
    10 * anderson.memory.max(5)
}

/// One sample's progress: iteration count and the best scaled residual so far.
pub(super) struct Progress {
    iterations: usize,
    pub(super) evals: usize,
    jvps: usize,
    best: f64,
    since_best: usize,
}

impl Progress {
    pub(super) fn new() -> Self {
        Progress {
            iterations: 0,
            evals: 0,
            jvps: 0,
            best: f64::INFINITY,
            since_best: 0,
        }
    }

    /// The stop reason at iterate z with residual r, or None to go on.
    pub(super) fn verdict<T: StopScalar>(
        &mut self,
        z: &[T],
        r: &[T],
        limits: &Limits,
    ) -> Option<(Termination, (f64, f64))> {
        let size = residual_size(z, r, limits.stop);
        let stop = if diverged(z, size.0, limits.stop) {
            Some(Termination::Diverged)
        } else if size.1 <= 1.0 {
            Some(Termination::Converged)
        } else if limits
            .max_time
            .is_some_and(|(dt, max_time)| self.iterations as f64 * dt >= max_time)
        {
            Some(Termination::MaxTime)
        } else if self.iterations >= limits.max_iterations {
            Some(Termination::MaxSteps)
        } else {
            if size.1 < self.best {
                self.best = size.1;
                self.since_best = 0;
            } else {
                self.since_best += 1;
            }
            (self.since_best > limits.stall_after).then_some(Termination::Stalled)
        };
        if stop.is_none() {
            self.iterations += 1;
        }
        stop.map(|t| (t, size))
    }

    pub(super) fn record(
        &self,
        z: DMatrix<f64>,
        termination: Termination,
        (residual, scaled_residual): (f64, f64),
        method: SolverMethod,
    ) -> SteadyState {
        SteadyState {
            state: z,
            termination,
            residual,
            scaled_residual,
            time: 0.0,
            steps: self.iterations,
            rhs_evals: self.evals,
            jvp_evals: self.jvps,
            solver: method,
            fallback_from: None,
            flow_certified: None,
            trajectory: None,
        }
    }
}

/// A method that moves one sample to its next iterate from the residual at the current one.
pub(super) trait Lane {
    fn state(&self) -> &DVector<f64>;
    /// The next iterate, given `r` at the current one and the sample's progress.
    fn advance(&mut self, r: &[f64], inv_tau: &DVector<f64>, progress: &Progress);
}

/// Runs `Lane`s of every column to a verdict, evaluating the residual of all running
/// samples in one batched call per iteration.
pub(super) fn iterate<F: VectorField, L: Lane>(
    field: &F,
    z0: &DMatrix<f64>,
    limits: &Limits,
    method: SolverMethod,
    lane: impl Fn(DVector<f64>) -> L,
) -> Vec<SteadyState> {
    let n = field.dim();
    let inv_tau = DVector::from_iterator(n, field.time_constants().iter().map(|t| 1.0 / t));
    let mut lanes: Vec<L> = (0..z0.ncols())
        .map(|j| lane(z0.column(j).into_owned()))
        .collect();
    let mut progress: Vec<Progress> = (0..lanes.len()).map(|_| Progress::new()).collect();
    let mut out: Vec<Option<SteadyState>> = vec![None; lanes.len()];
    let mut active: Vec<usize> = (0..lanes.len()).collect();
    let mut sub = field.select_samples(&active);
    while !active.is_empty() {
        let z = stack_columns(n, active.iter().map(|&j| lanes[j].state()));
        let r = sub.residual(&z);
        let mut finished = false;
        for (k, &j) in active.iter().enumerate() {
            let rk = &r.as_slice()[k * n..(k + 1) * n];
            let (lane, p) = (&mut lanes[j], &mut progress[j]);
            p.evals += 1;
            if let Some((term, size)) = p.verdict(lane.state().as_slice(), rk, limits) {
                out[j] = Some(p.record(as_column(lane.state()), term, size, method));
                finished = true;
            } else {
                lane.advance(rk, &inv_tau, p);
            }
        }
        if finished {
            active.retain(|&j| out[j].is_none());
            if !active.is_empty() {
                sub = field.select_samples(&active);
            }
        }
    }
    out.into_iter()
        .map(|r| r.expect("every sample ends"))
        .collect()
}

/// Anderson acceleration (type II, memory m) of the fixed-point map
/// `g(z) = z + h r(z) / tau` (h = `step`): with `f = g(z) - z` and the last m differences dZ, dF of
/// iterates and of f, `gamma = argmin |f - dF gamma|^2 + lambda |gamma|^2` and
/// `z <- z + beta f - (dZ + beta dF) gamma` (beta: damping). The history is cleared when
/// the residual has not improved for a while (restart on stagnation) or the small
/// least-squares problem is singular.
struct Anderson<'s> {
    settings: &'s AndersonSettings,
    z: DVector<f64>,
    previous: Option<(DVector<f64>, DVector<f64>)>,
    dz: Vec<DVector<f64>>,
    df: Vec<DVector<f64>>,
    /// Gram matrix dF^T dF of the stored differences (ring buffer slots).
    gram: DMatrix<f64>,
    slot: usize,
}

impl<'s> Anderson<'s> {
    fn new(z: DVector<f64>, settings: &'s AndersonSettings) -> Self {
        Anderson {
            settings,
            z,
            previous: None,
            dz: Vec::new(),
            df: Vec::new(),
            gram: DMatrix::zeros(0, 0),
            slot: 0,
        }
    }

    fn clear(&mut self) {
        self.dz.clear();
        self.df.clear();
        self.slot = 0;
    }

    fn push(&mut self, dz: DVector<f64>, df: DVector<f64>, memory: usize) {
        if self.gram.nrows() != memory {
            self.gram = DMatrix::zeros(memory, memory);
        }
        let s = self.slot;
        if self.dz.len() < memory {
            self.dz.push(dz);
            self.df.push(df);
        } else {
            self.dz[s] = dz;
            self.df[s] = df;
        }
        for i in 0..self.df.len() {
            let g = self.df[s].dot(&self.df[i]);
            self.gram[(s, i)] = g;
            self.gram[(i, s)] = g;
        }
        self.slot = (s + 1) % memory;
    }
}

impl Lane for Anderson<'_> {
    fn state(&self) -> &DVector<f64> {
        &self.z
    }
    fn advance(&mut self, r: &[f64], inv_tau: &DVector<f64>, progress: &Progress) {
        let settings = self.settings;
        let m = settings.memory;
        let f = DVector::from_iterator(
            r.len(),
            r.iter()
                .zip(inv_tau.iter())
                .map(|(r, it)| settings.step * r * it),
        );
        if let Some((z_prev, f_prev)) = self.previous.take() {
            self.push(&self.z - z_prev, &f - f_prev, m);
        }
        let since = progress.since_best;
        if since > 0 && since.is_multiple_of(restart_after(settings)) {
            self.clear();
        }
        let beta = settings.damping;
        let mut next = &self.z + &f * beta;
        let k = self.df.len();
        if k > 0 {
            let mut g = self.gram.view((0, 0), (k, k)).into_owned();
            let scale = (0..k).map(|i| g[(i, i)]).fold(0.0f64, f64::max);
            for i in 0..k {
                g[(i, i)] += settings.regularization * scale + f64::MIN_POSITIVE;
            }
            let rhs = DVector::from_fn(k, |i, _| self.df[i].dot(&f));
            match g.cholesky().map(|c| c.solve(&rhs)) {
                Some(gamma) if gamma.iter().all(|v| v.is_finite()) => {
                    for (i, &gi) in gamma.iter().enumerate() {
                        next.axpy(-gi, &self.dz[i], 1.0);
                        next.axpy(-gi * beta, &self.df[i], 1.0);
                    }
                }
                _ => self.clear(),
            }
        }
        self.previous = Some((std::mem::replace(&mut self.z, next), f));
    }
}

/// Newton's method on `r(z) = 0`: the step d solves `J d = -r` by GMRES on the exact
/// Jacobian action (to `|J d + r| <= forcing |r|`, at most `krylov_dim` products), then a
/// backtracking line search takes `z + lambda d` with the first lambda in 1, 1/2, 1/4, ...
/// that reduces |r| by the factor `1 - 1e-4 lambda`; no such lambda after 10 halvings ends
/// the sample as stalled.
fn newton_krylov<F: VectorField>(
    field: &F,
    z0: &DMatrix<f64>,
    limits: &Limits,
    settings: &NewtonKrylovSettings,
) -> Vec<SteadyState> {
    let method = SolverMethod::NewtonKrylov;
    let b = z0.ncols();
    let mut z: Vec<DVector<f64>> = (0..b).map(|j| z0.column(j).into_owned()).collect();
    let mut progress: Vec<Progress> = (0..b).map(|_| Progress::new()).collect();
    let r0 = field.residual(z0);
    let mut r: Vec<DVector<f64>> = (0..b).map(|j| r0.column(j).into_owned()).collect();
    let mut out: Vec<Option<SteadyState>> = vec![None; b];
    let mut active: Vec<usize> = (0..b).collect();
    let n = z0.nrows();
    let stack = |cols: &[usize], v: &[DVector<f64>]| stack_columns(n, cols.iter().map(|&j| &v[j]));
    for p in progress.iter_mut() {
        p.evals += 1;
    }
    while !active.is_empty() {
        for &j in &active {
            let (zj, rj) = (z[j].as_slice(), r[j].as_slice());
            if let Some((term, size)) = progress[j].verdict(zj, rj, limits) {
                out[j] = Some(progress[j].record(as_column(&z[j]), term, size, method));
            }
        }
        active.retain(|&j| out[j].is_none());
        if active.is_empty() {
            break;
        }
        let sub = field.select_samples(&active);
        let zs = stack(&active, &z);
        let rs = stack(&active, &r);
        let tol: Vec<f64> = active
            .iter()
            .map(|&j| settings.forcing * r[j].norm())
            .collect();
        let jacobian = sub.jacobian_at(&zs);
        let (d, products) = gmres(jacobian, &(-&rs), &tol, settings.krylov_dim);
        let mut pending: Vec<usize> = (0..active.len()).collect();
        let mut lambda = 1.0;
        for _ in 0..=10 {
            let cols: Vec<usize> = pending.iter().map(|&k| active[k]).collect();
            let trial = DMatrix::from_columns(
                &pending
                    .iter()
                    .map(|&k| &z[active[k]] + d.column(k) * lambda)
                    .collect::<Vec<_>>(),
            );
            let r_trial = field.select_samples(&cols).residual(&trial);
            let mut still = Vec::new();
            for (t, &k) in pending.iter().enumerate() {
                let j = active[k];
                progress[j].evals += 1;
                let rt = r_trial.column(t);
                if rt.norm() <= (1.0 - 1e-4 * lambda) * r[j].norm() {
                    z[j] = trial.column(t).into_owned();
                    r[j] = rt.into_owned();
                } else {
                    still.push(k);
                }
            }
            pending = still;
            if pending.is_empty() {
                break;
            }
            lambda *= 0.5;
        }
        for (k, &j) in active.iter().enumerate() {
            progress[j].jvps += products;
            if pending.contains(&k) {
                let size = residual_size(z[j].as_slice(), r[j].as_slice(), limits.stop);
                let stalled = Termination::Stalled;
                out[j] = Some(progress[j].record(as_column(&z[j]), stalled, size, method));
            }
        }
    }
    out.into_iter()
        .map(|r| r.expect("every sample ends"))
        .collect()
}

/// The vectors as the columns of an n x k matrix.
fn stack_columns<'a>(
    n: usize,
    columns: impl ExactSizeIterator<Item = &'a DVector<f64>>,
) -> DMatrix<f64> {
    let mut m = DMatrix::zeros(n, columns.len());
    for (k, c) in columns.enumerate() {
        m.set_column(k, c);
    }
    m
}

pub(super) fn as_column(v: &DVector<f64>) -> DMatrix<f64> {
    DMatrix::from_column_slice(v.len(), 1, v.as_slice())
}

/// Marks converged records whose equilibrium is unstable: the rightmost Ritz value of
/// `diag(1/tau) dr/dz` there has a positive real part (beyond round-off).
fn check_stability<F: VectorField>(field: &F, records: &mut [SteadyState], check: &StabilityCheck) {
    let converged: Vec<usize> = (0..records.len())
        .filter(|&j| records[j].converged())
        .collect();
    if converged.is_empty() {
        return;
    }
    let sub = field.select_samples(&converged);
    let z = DMatrix::from_columns(
        &converged
            .iter()
            .map(|&j| records[j].state.column(0))
            .collect::<Vec<_>>(),
    );
    let inv_tau =
        DVector::from_iterator(field.dim(), field.time_constants().iter().map(|t| 1.0 / t));
    let jacobian = sub.jacobian_at(&z);
    let apply = |v: &DMatrix<f64>| {
        let mut jv = jacobian(v);
        for mut col in jv.column_iter_mut() {
            col.component_mul_assign(&inv_tau);
        }
        jv
    };
    let (values, products) = rightmost_ritz_values(apply, field.dim(), converged.len(), check.dim);
    for (&j, &max_real) in converged.iter().zip(&values) {
        let rec = &mut records[j];
        rec.jvp_evals += products;
        if max_real.is_nan() || max_real > 1e-9 {
            rec.termination = Termination::Unstable { max_real };
        }
    }
}
