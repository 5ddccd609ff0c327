//! Forward Euler `z <- z + dt r(z) / tau` on a chunk of samples at once: every step
//! evaluates the residual of all running samples in one batched call (products instead of
//! one matrix-vector product per sample) into a buffer reused across steps, and updates
//! the states in place; a sample leaves the chunk when it stops. Each sample takes exactly
//! the steps of its own solve, with the same stopping rules.

use super::accelerated::{Limits, Progress};
use super::{EulerSettings, SolverMethod, SteadyState, StopCriterion, VectorField};
use crate::numerics::simd::add_scaled;
use nalgebra::DMatrix;

/// Every column of `z0` integrated by forward Euler until `|r_i| <= atol + rtol |z_i|`,
/// `max_time` or `max_steps` (no trajectory).
pub(super) fn solve<F: VectorField>(
    field: &F,
    z0: &DMatrix<f64>,
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
                let state = DMatrix::from_column_slice(n, 1, zk);
                out[j] = Some(p.record(state, term, size, SolverMethod::Euler));
                finished = true;
            } else if unit_tau {
                add_scaled(zk, rk, dt);
            } else {
                for ((z, r), t) in zk.iter_mut().zip(rk).zip(&tau) {
                    *z += r / t * dt;
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
