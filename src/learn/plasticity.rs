//! The least-control plasticity rule (spec 2): at the controlled equilibrium phi* with
//! control psi*, every parameter moves along `(d_theta f(phi*, theta, x))^T psi*`
//! (rate network: `delta W = psi_v* s(v*)^T`, `delta D = psi_y* s(v*)^T`, ...), which is
//! `-grad_theta H` with `H = 1/2 |psi*|^2` (exactly `-grad_theta H_alpha` at finite alpha).

use crate::control::CoupledSystem;
use crate::system::params::Params;
use crate::system::EquilibriumSystem;
use nalgebra::DMatrix;

/// `Delta theta = combine * sum_samples (d_theta f(phi*, theta, x))^T psi*` for controlled
/// states z* (dim x B); multiply by a learning rate eta to apply it.
pub fn least_control_update<M: EquilibriumSystem>(
    system: &CoupledSystem<'_, M>,
    z_star: &DMatrix<f64>,
) -> Params {
    update_from_control(system, &system.phi(z_star), &system.control(z_star))
}

/// [`least_control_update`] from the equilibrium phi* and its control psi* (n x B each),
/// however they were found (LCP-EBD reads psi* = -f(phi*)).
pub fn update_from_control<M: EquilibriumSystem>(
    system: &CoupledSystem<'_, M>,
    phi_star: &DMatrix<f64>,
    psi_star: &DMatrix<f64>,
) -> Params {
    let mut update = system
        .model()
        .param_vjp(phi_star, system.inputs(), psi_star);
    update.scale(system.objective().combine);
    update
}

/// The control magnitude `H = 1/2 |psi*|^2` of each sample (column).
pub fn control_magnitude<M: EquilibriumSystem>(
    system: &CoupledSystem<'_, M>,
    z_star: &DMatrix<f64>,
) -> Vec<f64> {
    half_squared_norms(&system.control(z_star))
}

/// `1/2 |psi_j|^2` of every column j of a control psi (n x B).
pub fn half_squared_norms(psi: &DMatrix<f64>) -> Vec<f64> {
    psi.column_iter().map(|c| 0.5 * c.norm_squared()).collect()
}

/// The relaxed energy of each sample (spec 2.1),
/// `E_alpha(phi) = 1/2 |f(phi, theta, x)|^2 + beta * scale * L(y(phi))`, whose minimum over
/// phi is `H_alpha(theta)`; the LCP-DI controlled equilibrium is that minimiser.
pub fn relaxed_energy<M: EquilibriumSystem>(
    system: &CoupledSystem<'_, M>,
    phi: &DMatrix<f64>,
    beta: f64,
) -> Vec<f64> {
    let f = system.model().vector_field(phi, system.inputs());
    let losses = system.losses(phi);
    f.column_iter()
        .zip(losses)
        .map(|(c, l)| 0.5 * c.norm_squared() + beta * l)
        .collect()
}

/// Combines per-sample values (H, losses) as the batch objective does: `combine * sum`.
pub fn combine<M: EquilibriumSystem>(system: &CoupledSystem<'_, M>, values: &[f64]) -> f64 {
    system.objective().combine * values.iter().sum::<f64>()
}
