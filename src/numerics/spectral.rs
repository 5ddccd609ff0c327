//! The spectral-norm bound on a weight matrix (issue 13 item 3): keeping the free
//! equilibrium stable by projecting W onto { ||W||_2 <= bound } after each optimizer step.
//!
//! For the rate network tau dphi/dt = -phi + W rho(phi) + ..., with rho' in [0, 1], the
//! map phi -> W rho(phi) + ... has Lipschitz constant <= ||W||_2, so a bound < 1 makes it a
//! contraction: one free equilibrium, globally attracting. The projection is a per-matrix
//! operation (it needs sigma_max of the whole W), not a synapse-local rule.

use nalgebra::{DMatrix, DVector};

/// Power iterations at most, and the relative change of sigma that stops them.
const MAX_ITERATIONS: usize = 500;
const TOLERANCE: f64 = 1e-12;

/// sigma_max(W) = ||W||_2 by power iteration on W^T W from a fixed start
/// (v_k+1 = W^T W v_k / ||W^T W v_k||, sigma = ||W v||): deterministic, no seed.
pub fn spectral_norm(w: &DMatrix<f64>) -> f64 {
    if w.is_empty() {
        return 0.0;
    }
    let n = w.ncols();
    // A start with a component along every direction in general position.
    let mut v = DVector::from_fn(n, |i, _| {
        1.0 + 0.5 * ((i as f64) * 0.618_033_988_75).fract()
    });
    v /= v.norm();
    let mut sigma = 0.0;
    for _ in 0..MAX_ITERATIONS {
        let wv = w * &v;
        let next = wv.norm();
        let u = w.tr_mul(&wv);
        let un = u.norm();
        if un == 0.0 {
            return next;
        }
        v = u / un;
        let converged = (next - sigma).abs() <= TOLERANCE * next;
        sigma = next;
        if converged {
            break;
        }
    }
    (w * &v).norm()
}

/// The projection W <- W * bound / ||W||_2 when ||W||_2 > bound (W unchanged otherwise).
/// Returns the norm before the projection.
pub fn project_spectral_norm(w: &mut DMatrix<f64>, bound: f64) -> f64 {
    let sigma = spectral_norm(w);
    if sigma > bound {
        *w *= bound / sigma;
    }
    sigma
}
