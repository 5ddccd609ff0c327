//! Forward Euler `z <- z + dt r(z) / tau` on a chunk of samples at once: every step
//! evaluates the residual of all running samples in one batched call (products instead of
//! one matrix-vector product per sample), and a sample leaves the chunk when it stops.
//! Each sample takes exactly the steps of its own solve, with the same stopping rules.

use super::accelerated::{iterate, Lane, Limits, Progress};
use super::{EulerSettings, SolverMethod, SteadyState, StopCriterion, VectorField};
use nalgebra::{DMatrix, DVector};

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
    let tau = DVector::from_vec(field.time_constants());
    let lane = |z| EulerLane {
        z,
        tau: &tau,
        dt: euler.dt,
    };
    let mut records = iterate(field, z0, &limits, SolverMethod::Euler, lane);
    for rec in &mut records {
        rec.time = rec.steps as f64 * euler.dt;
    }
    records
}

/// One sample's Euler iterate.
struct EulerLane<'t> {
    z: DVector<f64>,
    tau: &'t DVector<f64>,
    dt: f64,
}

impl Lane for EulerLane<'_> {
    fn state(&self) -> &DVector<f64> {
        &self.z
    }
    fn advance(&mut self, r: &[f64], _inv_tau: &DVector<f64>, _progress: &Progress) {
        let dt = self.dt;
        let z = self.z.as_mut_slice();
        for ((z, r), tau) in z.iter_mut().zip(r).zip(self.tau.as_slice()) {
            *z += r / tau * dt;
        }
    }
}
