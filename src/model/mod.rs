//! Equilibrium systems `tau dphi/dt = f(phi, theta, x)` (spec 1), written against a small
//! interface so that the controller, the steady-state solvers and the plasticity rule
//! work for every model. States are matrices n x B: one column per sample.

pub mod rate;

use crate::params::Params;
use nalgebra::DMatrix;
use std::sync::Arc;

/// A model whose free dynamics are `tau dphi/dt = f(phi, theta, x)`. The loss reads the
/// last [`EquilibriumModel::output_dim`] components of `phi` (the output units); the
/// others are hidden units.
pub trait EquilibriumModel: Sync {
    /// Dimension n of the state phi.
    fn state_dim(&self) -> usize;
    /// Number of output units (the last rows of phi).
    fn output_dim(&self) -> usize;
    /// Dimension of one input column x.
    fn input_dim(&self) -> usize;
    /// The parameters theta.
    fn params(&self) -> &Params;
    /// The parameters theta, mutably (the optimizer writes here).
    fn params_mut(&mut self) -> &mut Params;
    /// The part of `f` that does not depend on phi (inputs and biases; n x B), computed
    /// once per batch: `f(phi, theta, x) = vector_field_driven(phi, input_drive(x))`.
    fn input_drive(&self, x: &DMatrix<f64>) -> DMatrix<f64>;
    /// The free vector field `f(phi, theta, x)` given `drive = input_drive(x)`.
    fn vector_field_driven(&self, phi: &DMatrix<f64>, drive: &DMatrix<f64>) -> DMatrix<f64>;
    /// The free vector field `f(phi, theta, x)`.
    fn vector_field(&self, phi: &DMatrix<f64>, x: &DMatrix<f64>) -> DMatrix<f64> {
        self.vector_field_driven(phi, &self.input_drive(x))
    }
    /// `(f(phi), J_f(phi)^T w)` in one call (a model may share work between the two); with
    /// `feedback` (LCP-KP), its weights stand in for the transposed weights of `J_f^T`.
    fn field_and_vjp(
        &self,
        phi: &DMatrix<f64>,
        x: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
        feedback: Option<&Arc<Params>>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        let lin = self.linearize(phi, x, None, feedback);
        (self.vector_field_driven(phi, drive), self.vjp_at(&lin, w))
    }
    /// What the Jacobian products need at phi, computed once for many products.
    type Linearization: Send + Sync;
    /// Linearises at phi; `psi` is the signal of the second-order term (see `vjp_jvp_at`).
    /// With `feedback` (learned weights of LCP-KP, [`EquilibriumModel::init_feedback`]'s
    /// layout), `vjp_at` and `vjp_jvp_at` use them in place of the transposed weights:
    /// the controller's feedback path instead of the exact `J_f^T`.
    fn linearize(
        &self,
        phi: &DMatrix<f64>,
        x: &DMatrix<f64>,
        psi: Option<&DMatrix<f64>>,
        feedback: Option<&Arc<Params>>,
    ) -> Self::Linearization;
    /// Learned feedback weights for LCP-KP (spec 3.2), one tensor per transposed weight of
    /// `J_f^T`, at their initial values drawn from `seed`.
    fn init_feedback(&self, seed: u64) -> Params;
    /// The feedback tensors' "transposed" updates: for each weight that a feedback tensor
    /// stands in for, that weight's update transposed (`update` has the layout of `params`).
    fn transposed_update(&self, update: &Params) -> Params;
    /// `J_f(phi) dphi` with `J_f = d f / d phi`, at the linearisation point.
    fn jvp_at(&self, lin: &Self::Linearization, dphi: &DMatrix<f64>) -> DMatrix<f64>;
    /// `J_f(phi)^T w` at the linearisation point.
    fn vjp_at(&self, lin: &Self::Linearization, w: &DMatrix<f64>) -> DMatrix<f64>;
    /// `d/d eps [J_f(phi + eps dphi)^T psi]` at eps = 0 for the psi given to `linearize`
    /// (zero without one): the second-order term of the dynamic-inversion Jacobian.
    fn vjp_jvp_at(&self, lin: &Self::Linearization, dphi: &DMatrix<f64>) -> DMatrix<f64>;
    /// The Jacobian-vector product `J_f(phi) dphi`.
    fn jvp(&self, phi: &DMatrix<f64>, x: &DMatrix<f64>, dphi: &DMatrix<f64>) -> DMatrix<f64> {
        self.jvp_at(&self.linearize(phi, x, None, None), dphi)
    }
    /// The transposed product `J_f(phi)^T w`.
    fn vjp(&self, phi: &DMatrix<f64>, x: &DMatrix<f64>, w: &DMatrix<f64>) -> DMatrix<f64> {
        self.vjp_at(&self.linearize(phi, x, None, None), w)
    }
    /// The directional derivative `d/d eps [J_f(phi + eps dphi)^T w]` at eps = 0.
    fn vjp_jvp(
        &self,
        phi: &DMatrix<f64>,
        x: &DMatrix<f64>,
        w: &DMatrix<f64>,
        dphi: &DMatrix<f64>,
    ) -> DMatrix<f64> {
        self.vjp_jvp_at(&self.linearize(phi, x, Some(w), None), dphi)
    }
    /// `(d_theta f(phi, theta, x))^T psi`, summed over the columns (samples).
    fn param_vjp(&self, phi: &DMatrix<f64>, x: &DMatrix<f64>, psi: &DMatrix<f64>) -> Params;
    /// The state a relaxation starts from (zeros unless a model says otherwise).
    fn initial_state(&self, batch: usize) -> DMatrix<f64> {
        DMatrix::zeros(self.state_dim(), batch)
    }
    /// Number of hidden (non-output) units.
    fn hidden_dim(&self) -> usize {
        self.state_dim() - self.output_dim()
    }
}
