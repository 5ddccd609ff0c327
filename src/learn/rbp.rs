//! Gradient baselines (spec 5): recurrent backprop (implicit differentiation) at the free
//! equilibrium; on the layered net it is exactly backprop. Gradients come back in the
//! same [`Params`] layout as the least-control update, so the two compare directly.

use crate::control::CoupledSystem;
use crate::solve::{
    forward_euler, solve_batch, BatchSteadyState, EulerSettings, SolverSettings, SteadyState,
    StopCriterion, VectorField,
};
use crate::system::params::Params;
use crate::system::{EquilibriumSystem, SinglePrecision};
use nalgebra::DMatrix;
use std::sync::Arc;

/// The adjoint system at the free equilibria phi0 (one column per sample):
/// `d lambda/dt = J_f(phi0)^T lambda - grad_phi L(phi0)`, whose steady state solves
/// `J_f^T lambda = grad_phi L` (stable whenever the free equilibrium is). For the rate
/// network `lambda = -(g, grad_y L)` with g the RBP adjoint `g = s'(v0) * (W^T g + D^T grad_y L)`;
/// forward Euler with dt = 1 is the reference's adjoint iteration.
pub struct AdjointSystem<'a, M: EquilibriumSystem> {
    model: &'a M,
    phi0: DMatrix<f64>,
    input: DMatrix<f64>,
    loss_gradient: DMatrix<f64>,
    /// The model linearised at phi0 (the adjoint system is linear).
    lin: M::Linearization,
}

impl<'a, M: EquilibriumSystem> AdjointSystem<'a, M> {
    fn new(
        model: &'a M,
        phi0: DMatrix<f64>,
        input: DMatrix<f64>,
        loss_gradient: DMatrix<f64>,
    ) -> Self {
        AdjointSystem {
            lin: model.linearize(&phi0, &input, None),
            model,
            phi0,
            input,
            loss_gradient,
        }
    }
}

impl<M: EquilibriumSystem> VectorField for AdjointSystem<'_, M> {
    fn dim(&self) -> usize {
        self.model.state_dim()
    }
    fn batch(&self) -> usize {
        self.phi0.ncols()
    }
    fn select_samples(&self, columns: &[usize]) -> Self {
        AdjointSystem::new(
            self.model,
            self.phi0.select_columns(columns),
            self.input.select_columns(columns),
            self.loss_gradient.select_columns(columns),
        )
    }
    fn time_constants(&self) -> Vec<f64> {
        vec![1.0; self.dim()]
    }
    fn residual(&self, lambda: &DMatrix<f64>) -> DMatrix<f64> {
        self.model.vjp_at(&self.lin, lambda) - &self.loss_gradient
    }
    fn residual_into(&self, lambda: &DMatrix<f64>, r: &mut DMatrix<f64>) {
        self.model.vjp_at_into(&self.lin, lambda, r.as_view_mut());
        *r -= &self.loss_gradient;
    }
    fn residual_jvp(&self, _lambda: &DMatrix<f64>, d: &DMatrix<f64>) -> DMatrix<f64> {
        self.model.vjp_at(&self.lin, d)
    }
    /// The adjoint system is linear: its one equilibrium needs no flow certificate.
    fn certify_against_flow(&self) -> bool {
        false
    }
    fn euler_in_single_precision(
        &self,
        z0: &DMatrix<f64>,
        stop: &StopCriterion,
        euler: &EulerSettings,
    ) -> Option<Vec<SteadyState>> {
        let round = |m: &DMatrix<f64>| m.map(|x| x as f32);
        let field = SingleAdjoint::new(
            self.model.single_precision()?,
            round(&self.phi0),
            round(&self.loss_gradient),
        );
        Some(forward_euler(&field, &round(z0), stop, euler))
    }
}

/// The adjoint system in single precision: `J_f(phi0)^T` by the system's f32 form,
/// linearised once at phi0 rounded to f32.
struct SingleAdjoint {
    kernels: Arc<dyn SinglePrecision>,
    phi0: DMatrix<f32>,
    lin: DMatrix<f32>,
    loss_gradient: DMatrix<f32>,
}

impl SingleAdjoint {
    fn new(
        kernels: Arc<dyn SinglePrecision>,
        phi0: DMatrix<f32>,
        loss_gradient: DMatrix<f32>,
    ) -> Self {
        SingleAdjoint {
            lin: kernels.linearization(phi0.as_view()),
            kernels,
            phi0,
            loss_gradient,
        }
    }
}

/// (The trait is named by its path: in scope, its blanket impl for every `VectorField`
/// would make `dim` ambiguous above.)
impl crate::solve::EulerField<f32> for SingleAdjoint {
    fn dim(&self) -> usize {
        self.phi0.nrows()
    }
    fn time_constants(&self) -> Vec<f64> {
        vec![1.0; self.phi0.nrows()]
    }
    fn residual_into(&self, lambda: &DMatrix<f32>, r: &mut DMatrix<f32>) {
        self.kernels
            .vjp_linearized_into(&self.lin, lambda, r.as_view_mut());
        *r -= &self.loss_gradient;
    }
    fn select_samples(&self, columns: &[usize]) -> Self {
        SingleAdjoint::new(
            self.kernels.clone(),
            self.phi0.select_columns(columns),
            self.loss_gradient.select_columns(columns),
        )
    }
}

/// The adjoint system of every sample at the free equilibria phi0 (n x B).
pub fn adjoint_system<'a, M: EquilibriumSystem>(
    system: &CoupledSystem<'a, M>,
    phi0: &DMatrix<f64>,
) -> AdjointSystem<'a, M> {
    AdjointSystem::new(
        system.model(),
        phi0.clone(),
        system.inputs().clone(),
        system.state_loss_gradient(phi0),
    )
}

/// The RBP gradient of the batch loss `combine * sum_samples scale * L(phi0)` at free
/// equilibria phi0 (n x B): `grad_theta = -(d_theta f)^T lambda`, with the adjoints lambda
/// relaxed by `opts`. Returns the gradient and the adjoint solves.
pub fn rbp_gradient<M: EquilibriumSystem>(
    system: &CoupledSystem<'_, M>,
    phi0: &DMatrix<f64>,
    opts: &SolverSettings,
) -> (Params, BatchSteadyState) {
    let zeros = DMatrix::zeros(phi0.nrows(), phi0.ncols());
    let adjoints = solve_batch(&adjoint_system(system, phi0), &zeros, opts);
    (
        gradient_from_adjoints(system, phi0, &adjoints.states),
        adjoints,
    )
}

/// `-combine * (d_theta f(phi0))^T lambda` for given adjoints lambda (n x B).
pub fn gradient_from_adjoints<M: EquilibriumSystem>(
    system: &CoupledSystem<'_, M>,
    phi0: &DMatrix<f64>,
    lambda: &DMatrix<f64>,
) -> Params {
    let mut gradient = system.model().param_vjp(phi0, system.inputs(), lambda);
    gradient.scale(-system.objective().combine);
    gradient
}
