//! The baselines' meta-gradients at the inner solutions phi* of an [`InnerProblem`] batch
//! (e.g. [`crate::system::meta::MetaSystem`]): implicit MAML (the exact implicit gradient by
//! conjugate gradient on Hessian-vector products) and first-order MAML (the query gradient
//! at phi*, no second derivatives).
//!
//! ```text
//! implicit:     d L_out(phi*(theta)) / d theta = (d_theta f)^T w,  (H_in + lambda I) w = grad L_out(phi*)
//!                                              = lambda (H_in + lambda I)^{-1} grad L_out(phi*)
//! first-order:  (d_theta f)^T (grad L_out(phi*) / lambda) = grad L_out(phi*)
//! ```
//!
//! Each summed over the tasks with the objective's `combine` (as RBP's gradient is).
//!
//! [`InnerProblem`]: crate::system::InnerProblem

use crate::control::CoupledSystem;
use crate::error::{invalid, Result};
use crate::system::params::Params;
use crate::system::EquilibriumSystem;
use nalgebra::{DMatrix, DVector};

/// What the conjugate-gradient solves of a batch did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CgReport {
    /// Largest iteration count over the tasks.
    pub max_iterations: usize,
    /// Mean iteration count over the tasks.
    pub mean_iterations: f64,
    /// Largest final relative residual `|A w - g| / |g|` over the tasks.
    pub max_relative_residual: f64,
    /// Tasks that did not reach the tolerance.
    pub unconverged: usize,
    /// Whether every task reached the tolerance.
    pub converged: bool,
}

/// Solves `A w = g` for symmetric positive definite A (given as its product) by conjugate
/// gradient from w = 0, to `|A w - g| <= tol |g|` or `max_iter` iterations; returns
/// `(w, iterations, relative residual)`. A direction of non-positive curvature ends it early
/// (A is then not positive definite) with the residual reached.
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
        let curvature = p.dot(&ap);
        if curvature.is_nan() || curvature <= 0.0 {
            break;
        }
        let a = rr / curvature;
        w.axpy(a, &p, 1.0);
        r.axpy(-a, &ap, 1.0);
        let rr_new = r.norm_squared();
        p = &r + &p * (rr_new / rr);
        rr = rr_new;
        k += 1;
    }
    (w, k, rr.sqrt() / g_norm)
}

/// The pull lambda of the inner problem, or an error naming `method.name`.
fn pull<S: EquilibriumSystem>(model: &S, method: &str) -> Result<f64> {
    model.inner_problem().map(|p| p.pull()).ok_or_else(|| {
        invalid(
            "method.name",
            method,
            "a meta-learning system (model.kind = \"meta\")",
        )
    })
}

/// The implicit-MAML meta-gradient at the free equilibria phi* (n x B) of `system`, by CG on
/// `(H_in + lambda I) w = grad L_out(phi*)` per task; the iterations are reported.
pub fn implicit_meta_gradient<S: EquilibriumSystem>(
    system: &CoupledSystem<'_, S>,
    phi_star: &DMatrix<f64>,
    tol: f64,
    max_iter: usize,
) -> Result<(Params, CgReport)> {
    let model = system.model();
    pull(model, "imaml")?;
    let grad_out = system.loss_gradient(phi_star);
    let b = phi_star.ncols();
    let solves: Vec<(DVector<f64>, usize, f64)> = {
        use rayon::prelude::*;
        (0..b)
            .into_par_iter()
            .map(|j| {
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
                conjugate_gradient(apply, &grad_out.column(j).into_owned(), tol, max_iter)
            })
            .collect()
    };
    let mut w = DMatrix::zeros(phi_star.nrows(), b);
    let mut report = CgReport {
        max_iterations: 0,
        mean_iterations: 0.0,
        max_relative_residual: 0.0,
        unconverged: 0,
        converged: true,
    };
    for (j, (wj, k, res)) in solves.into_iter().enumerate() {
        w.set_column(j, &wj);
        report.max_iterations = report.max_iterations.max(k);
        report.mean_iterations += k as f64 / b.max(1) as f64;
        report.max_relative_residual = report.max_relative_residual.max(res);
        report.unconverged += usize::from(res.is_nan() || res > tol);
    }
    report.converged = report.unconverged == 0;
    let mut g = model.param_vjp(phi_star, system.inputs(), &w);
    g.scale(system.objective().combine);
    Ok((g, report))
}

/// First-order MAML: `combine * sum_tasks grad L_out(phi*)` (the implicit gradient with
/// `H_in` dropped).
pub fn first_order_meta_gradient<S: EquilibriumSystem>(
    system: &CoupledSystem<'_, S>,
    phi_star: &DMatrix<f64>,
) -> Result<Params> {
    let model = system.model();
    let lambda = pull(model, "fomaml")?;
    let w = system.loss_gradient(phi_star) / lambda;
    let mut g = model.param_vjp(phi_star, system.inputs(), &w);
    g.scale(system.objective().combine);
    Ok(g)
}
