//! Forward Euler `z <- z + dt r(z) / tau` on a chunk of samples at once: every step
//! evaluates the residual of all running samples in one batched call (products instead of
//! one matrix-vector product per sample) into a buffer reused across steps, and updates
//! the states in place; a sample leaves the chunk when it stops. Each sample takes exactly
//! the steps of its own solve, with the same stopping rules. The iterations run in f64, or
//! in f32 for a field's single-precision form (the stop test in f32 too; the records in f64).

use super::accelerated::{Limits, Progress};
use super::{EulerSettings, SolverMethod, SteadyState, StopCriterion, StopScalar, VectorField};
use nalgebra::DMatrix;

/// What forward Euler steps, in scalar T: every [`VectorField`] in f64, a field's
/// single-precision form in f32 ([`VectorField::euler_in_single_precision`]).
pub trait EulerField<T: StopScalar>: Sized {
    /// Dimension of z.
    fn dim(&self) -> usize;
    /// Time constant of each component.
    fn time_constants(&self) -> Vec<f64>;
    /// `r(z)` written into `r` (dim x B).
    fn residual_into(&self, z: &DMatrix<T>, r: &mut DMatrix<T>);
    /// The field of the samples `columns` only (in that order).
    fn select_samples(&self, columns: &[usize]) -> Self;
}

impl<F: VectorField> EulerField<f64> for F {
    fn dim(&self) -> usize {
        VectorField::dim(self)
    }
    fn time_constants(&self) -> Vec<f64> {
        VectorField::time_constants(self)
    }
    fn residual_into(&self, z: &DMatrix<f64>, r: &mut DMatrix<f64>) {
        VectorField::residual_into(self, z, r)
    }
    fn select_samples(&self, columns: &[usize]) -> Self {
        VectorField::select_samples(self, columns)
    }
}

/// Every column of `z0` integrated by forward Euler until `|r_i| <= atol + rtol |z_i|`,
/// `max_time` or `max_steps` (no trajectory), in the field's scalar T; the records hold
/// the final states in f64.
pub fn forward_euler<T: StopScalar, F: EulerField<T>>(
    field: &F,
    z0: &DMatrix<T>,
    stop: &StopCriterion,
    euler: &EulerSettings,
) -> Vec<SteadyState> {
    let limits = Limits {
        stop,
        max_iterations: stop.max_steps,
        stall_after: usize::MAX,
        max_time: Some((euler.dt, stop.max_time)),
    };
    let (n, dt) = (field.dim(), euler.dt);
    let tau = field.time_constants();
    // r / 1 = r exactly: with unit time constants the division is skipped.
    let unit_tau = tau.iter().all(|&t| t == 1.0);
    let tau: Vec<T> = tau.into_iter().map(T::round_from).collect();
    let step = T::round_from(dt);
    let b = z0.ncols();
    let mut progress: Vec<Progress> = (0..b).map(|_| Progress::new()).collect();
    let mut out: Vec<Option<SteadyState>> = vec![None; b];
    let mut active: Vec<usize> = (0..b).collect();
    let mut z = z0.clone();
    let mut r = DMatrix::zeros(n, b);
    // The field of the running samples once some have stopped (None: all of `field`).
    let mut sub: Option<F> = None;
    while !active.is_empty() {
        sub.as_ref().unwrap_or(field).residual_into(&z, &mut r);
        let mut finished = false;
        let columns = z.as_mut_slice().chunks_exact_mut(n);
        for ((zk, rk), &j) in columns.zip(r.as_slice().chunks_exact(n)).zip(&active) {
            let p = &mut progress[j];
            p.evals += 1;
            if let Some((term, size)) = p.verdict(zk, rk, &limits) {
                let state = DMatrix::from_iterator(n, 1, zk.iter().map(|v| v.widen()));
                out[j] = Some(p.record(state, term, size, SolverMethod::Euler));
                finished = true;
            } else if unit_tau {
                T::add_scaled(zk, rk, dt);
            } else {
                for ((z, r), t) in zk.iter_mut().zip(rk).zip(&tau) {
                    *z += *r / *t * step;
                }
            }
        }
        if finished {
            let keep: Vec<usize> = (0..active.len())
                .filter(|&k| out[active[k]].is_none())
                .collect();
            active = keep.iter().map(|&k| active[k]).collect();
            if !active.is_empty() {
                z = z.select_columns(&keep);
                r = DMatrix::zeros(n, active.len());
                sub = Some(field.select_samples(&active));
            }
        }
    }
    out.into_iter()
        .map(|rec| {
            let mut rec = rec.expect("every sample ends");
            rec.time = rec.steps as f64 * dt;
            rec
        })
        .collect()
}
