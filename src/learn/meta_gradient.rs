//! The baselines' meta-gradients at the inner solutions phi* of a [`MetaSystem`] batch:
//! implicit MAML (the exact implicit gradient by conjugate gradient on Hessian-vector
//! products) and first-order MAML (the query gradient at phi*, no second derivatives).
//!
//! ```text
//! implicit:     d L_out(phi*(theta)) / d theta = lambda (H_in + lambda I)^{-1} grad L_out(phi*)
//! first-order:  grad L_out(phi*)
//! ```
//!
//! Each summed over the tasks with the objective's `combine` (as RBP's gradient is).

use crate::control::CoupledSystem;
use crate::system::meta::MetaSystem;
use crate::system::params::Params;
use crate::system::EquilibriumSystem;
use nalgebra::{DMatrix, DVector};

/// Conjugate-gradient settings and what a solve did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CgReport {
    /// Largest iteration count over the tasks.
    pub max_iterations: usize,
    /// Largest final relative residual `|A w - g| / |g|` over the tasks.
    pub max_relative_residual: f64,
    /// Whether every task reached the tolerance.
    pub converged: bool,
}

/// Solves `A w = g` for symmetric positive definite A (given as its product) by conjugate
/// gradient from w = 0, to `|A w - g| <= tol |g|` or `max_iter` iterations.
pub fn conjugate_gradient(
    apply: impl Fn(&DVector<f64>) -> DVector<f64>,
    g: &DVector<f64>,
    tol: f64,
    max_iter: usize,
) -> (DVector<f64>, usize, f64) {
    let g_norm = g.norm();
    let mut w = DVector::zeros(g.len());
    if g_norm == 0.0 {
        return (w, 0, 0.0);
    }
    let mut r = g.clone();
    let mut p = r.clone();
    let mut rr = r.norm_squared();
    let mut k = 0;
    while k < max_iter && rr.sqrt() > tol * g_norm {
        let ap = apply(&p);
        let a = rr / p.dot(&ap);
        w.axpy(a, &p, 1.0);
        r.axpy(-a, &ap, 1.0);
        let rr_new = r.norm_squared();
        p = &r + &p * (rr_new / rr);
        rr = rr_new;
        k += 1;
    }
    (w, k, rr.sqrt() / g_norm)
}

/// The implicit-MAML meta-gradient at the free equilibria phi* (n x B) of `system`, by CG on
/// `(H_in + lambda I) w = grad L_out(phi*)` per task; the iterations are reported.
pub fn implicit_meta_gradient(
    system: &CoupledSystem<'_, MetaSystem>,
    phi_star: &DMatrix<f64>,
    tol: f64,
    max_iter: usize,
) -> (Params, CgReport) {
    let model = system.model();
    let lambda = model.lambda();
    let grad_out = system.loss_gradient(phi_star);
    let mut sum = DVector::zeros(model.state_dim());
    let mut report = CgReport {
        max_iterations: 0,
        max_relative_residual: 0.0,
        converged: true,
    };
    for j in 0..phi_star.ncols() {
        let lin = model.linearize(
            &phi_star.columns(j, 1).into_owned(),
            &system.inputs().columns(j, 1).into_owned(),
            None,
        );
        // A v = (H_in + lambda I) v = -J_f v.
        let apply = |v: &DVector<f64>| {
            -model
                .jvp_at(&lin, &DMatrix::from_column_slice(v.len(), 1, v.as_slice()))
                .column(0)
                .into_owned()
        };
        let (w, k, res) =
            conjugate_gradient(apply, &grad_out.column(j).into_owned(), tol, max_iter);
        report.max_iterations = report.max_iterations.max(k);
        report.max_relative_residual = report.max_relative_residual.max(res);
        report.converged &= res <= tol;
        sum.axpy(lambda, &w, 1.0);
    }
    (theta_params(sum * system.objective().combine), report)
}

/// First-order MAML: `combine * sum_tasks grad L_out(phi*)`.
pub fn first_order_meta_gradient(
    system: &CoupledSystem<'_, MetaSystem>,
    phi_star: &DMatrix<f64>,
) -> Params {
    let g = system.loss_gradient(phi_star);
    theta_params(g.column_sum() * system.objective().combine)
}

fn theta_params(v: DVector<f64>) -> Params {
    Params::new(vec![(
        "theta".into(),
        DMatrix::from_column_slice(v.len(), 1, v.as_slice()),
    )])
}
