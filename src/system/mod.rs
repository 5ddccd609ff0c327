//! Equilibrium systems `tau dphi/dt = f(phi, theta, x)` (spec 1): the interface every system
//! implements, so that the controller ([`crate::control`]), the steady-state solvers
//! ([`crate::solve`]), the plasticity rule and the training loop work for each of them.
//! States are matrices n x B: one column per sample.
//!
//! A system implements [`EquilibriumSystem`] (f, `J v`, `J^T w`, `(d_theta f)^T psi`, where the
//! loss reads phi); the optional capabilities are methods with defaults (an exact free
//! equilibrium, the second-order term of dynamic inversion) or small traits a system may
//! offer ([`KolenPollack`] for LCP-KP, [`RateChange`] for LCP-LF).

pub mod conv_deq;
pub mod conv_net;
pub mod learner;
pub mod loss;
pub mod meta;
pub mod params;
pub mod rate;

use crate::numerics::real::Real;
use crate::system::params::Params;
use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut};
use std::ops::Range;
use std::sync::Arc;

/// How the controller's signal reaches the state (spec 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlEntry {
    /// The loss rows are leaky readouts, the last rows of phi (`tau dphi_R/dt = -phi_R +
    /// g(other rows)`, read by no other component): the control u enters them directly and
    /// dynamic inversion produces the control e of the other rows (the rate net's outputs).
    Readout,
    /// The control reaches every component through dynamic inversion,
    /// `tau_e de/dt = J_f^T e + u` (u on the loss rows): e.g. the inner problem of
    /// meta-learning, whose loss reads all of phi.
    Everywhere,
}

/// Rows of phi that hold feature maps: `channels x height x width` entries from `rows.start`,
/// channel-major, then row, then column (the layout of [`crate::numerics::conv`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureMapLayout {
    /// The maps' name in the system's words (`v1`, `z`).
    pub name: String,
    pub rows: Range<usize>,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

/// A system whose free dynamics are `tau dphi/dt = f(phi, theta, x)`.
pub trait EquilibriumSystem: Sync {
    /// What the Jacobian products need at phi, computed once for many products.
    type Linearization: Send + Sync;

    /// Dimension n of the state phi.
    fn state_dim(&self) -> usize;
    /// Dimension of one input column x.
    fn input_dim(&self) -> usize;
    /// The components of phi the loss `L(phi_R, target)` reads; the controller's u has one
    /// entry for each.
    fn loss_rows(&self) -> Range<usize>;
    /// How the control enters (see [`ControlEntry`]).
    fn control_entry(&self) -> ControlEntry;
    /// The parameters theta.
    fn params(&self) -> &Params;
    /// The parameters theta, mutably (the optimizer writes here).
    fn params_mut(&mut self) -> &mut Params;

    /// The part of `f` that does not depend on phi (inputs and biases; n x B, or with rows of
    /// per-column data appended below when f needs them, as meta-learning's support sets),
    /// computed once per batch: `f(phi, theta, x) = vector_field_driven(phi, input_drive(x))`.
    fn input_drive(&self, x: &DMatrix<f64>) -> DMatrix<f64>;
    /// The free vector field `f(phi, theta, x)` given `drive = input_drive(x)`.
    fn vector_field_driven(&self, phi: &DMatrix<f64>, drive: &DMatrix<f64>) -> DMatrix<f64>;
    /// [`EquilibriumSystem::vector_field_driven`] written into `out` (n x B), phi a view
    /// (the solvers' hot path: a system may avoid its temporaries; default: a copy).
    fn vector_field_driven_into(
        &self,
        phi: DMatrixView<'_, f64>,
        drive: &DMatrix<f64>,
        mut out: DMatrixViewMut<'_, f64>,
    ) {
        out.copy_from(&self.vector_field_driven(&phi.into_owned(), drive));
    }
    /// The free vector field `f(phi, theta, x)`.
    fn vector_field(&self, phi: &DMatrix<f64>, x: &DMatrix<f64>) -> DMatrix<f64> {
        self.vector_field_driven(phi, &self.input_drive(x))
    }

    /// Linearises at phi; `psi` is the signal of the second-order term (see
    /// [`EquilibriumSystem::second_order_at`]).
    fn linearize(
        &self,
        phi: &DMatrix<f64>,
        x: &DMatrix<f64>,
        psi: Option<&DMatrix<f64>>,
    ) -> Self::Linearization;
    /// `J_f(phi) dphi` with `J_f = d f / d phi`, at the linearisation point.
    fn jvp_at(&self, lin: &Self::Linearization, dphi: &DMatrix<f64>) -> DMatrix<f64>;
    /// `J_f(phi)^T w` at the linearisation point.
    fn vjp_at(&self, lin: &Self::Linearization, w: &DMatrix<f64>) -> DMatrix<f64>;
    /// [`EquilibriumSystem::vjp_at`] written into `out` (n x B; default: a copy).
    fn vjp_at_into(
        &self,
        lin: &Self::Linearization,
        w: &DMatrix<f64>,
        mut out: DMatrixViewMut<'_, f64>,
    ) {
        out.copy_from(&self.vjp_at(lin, w));
    }
    /// [`EquilibriumSystem::field_and_vjp`] written into `f` and `back` (n x B each), phi a
    /// view (default: copies).
    fn field_and_vjp_into(
        &self,
        phi: DMatrixView<'_, f64>,
        x: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
        mut f: DMatrixViewMut<'_, f64>,
        mut back: DMatrixViewMut<'_, f64>,
    ) {
        let (field, vjp) = self.field_and_vjp(&phi.into_owned(), x, drive, w);
        f.copy_from(&field);
        back.copy_from(&vjp);
    }
    /// `(f(phi), J_f(phi)^T w)` in one call (a system may share work between the two).
    fn field_and_vjp(
        &self,
        phi: &DMatrix<f64>,
        x: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
    ) -> (DMatrix<f64>, DMatrix<f64>) {
        let lin = self.linearize(phi, x, None);
        (self.vector_field_driven(phi, drive), self.vjp_at(&lin, w))
    }
    /// Optional: `d/d eps [J_f(phi + eps dphi)^T psi]` at eps = 0 for the psi given to
    /// `linearize` (zero without one), the second-order term of the dynamic-inversion
    /// Jacobian. None: the controlled system takes a central difference of `J_f^T psi`.
    fn second_order_at(
        &self,
        _lin: &Self::Linearization,
        _dphi: &DMatrix<f64>,
    ) -> Option<DMatrix<f64>> {
        None
    }
    /// `(d_theta f(phi, theta, x))^T psi`, summed over the columns (samples).
    fn param_vjp(&self, phi: &DMatrix<f64>, x: &DMatrix<f64>, psi: &DMatrix<f64>) -> Params;

    /// The state a relaxation starts from (zeros unless a system says otherwise).
    fn initial_state(&self, batch: usize) -> DMatrix<f64> {
        DMatrix::zeros(self.state_dim(), batch)
    }
    /// Optional: the free equilibrium in closed form (a layered net's forward pass), n x B.
    fn exact_free_equilibrium(&self, _x: &DMatrix<f64>) -> Option<DMatrix<f64>> {
        None
    }
    /// Optional capability: the free field and `J_f^T w` in single precision, with the
    /// parameters rounded to f32 on each call (once per chunk of a solve; `solver.precision =
    /// "f32"`; None: f64 only).
    fn single_precision(&self) -> Option<Arc<dyn SinglePrecision>> {
        None
    }
    /// Optional capability: learned Kolen-Pollack feedback weights (LCP-KP).
    fn kolen_pollack(&self) -> Option<&dyn KolenPollack<Self::Linearization>> {
        None
    }
    /// Optional capability: the rate change a control causes (LCP-LF's update).
    fn rate_change(&self) -> Option<&dyn RateChange> {
        None
    }
    /// Optional capability: the system is the inner problem of meta-learning (implicit and
    /// first-order MAML apply).
    fn inner_problem(&self) -> Option<&dyn InnerProblem> {
        None
    }

    /// Optional: the 2-D convolutions of the system, each with the name of its kernel tensor
    /// (for `lcsim throughput`'s kernel timings; default: none).
    fn convolutions(&self) -> Vec<(String, crate::numerics::conv::Conv2d)> {
        Vec::new()
    }

    /// Optional: where phi holds feature maps (conv layers, a DEQ's z), for figures of the
    /// maps (default: none).
    fn feature_maps(&self) -> Vec<FeatureMapLayout> {
        Vec::new()
    }

    /// The parameters as named arrays for params.npz (default: the tensors of
    /// [`EquilibriumSystem::params`] as they are).
    fn exported_params(&self) -> Vec<(String, DMatrix<f64>)> {
        self.params()
            .iter()
            .map(|(n, m)| (n.to_string(), m.clone()))
            .collect()
    }

    /// Number of loss rows (the dimension of the controller's u).
    fn loss_dim(&self) -> usize {
        self.loss_rows().len()
    }
    /// The Jacobian-vector product `J_f(phi) dphi`.
    fn jvp(&self, phi: &DMatrix<f64>, x: &DMatrix<f64>, dphi: &DMatrix<f64>) -> DMatrix<f64> {
        self.jvp_at(&self.linearize(phi, x, None), dphi)
    }
    /// The transposed product `J_f(phi)^T w`.
    fn vjp(&self, phi: &DMatrix<f64>, x: &DMatrix<f64>, w: &DMatrix<f64>) -> DMatrix<f64> {
        self.vjp_at(&self.linearize(phi, x, None), w)
    }
}

/// The two products forward Euler needs each step, in scalar T (f64 or f32), given the
/// input drive in T: the free field `f = vector_field_driven(phi, drive)` and `(f, J_f^T w)`.
pub trait FieldKernels<T: Real>: Send + Sync {
    /// `f(phi)` written into `out` (n x B).
    fn vector_field_driven_into(
        &self,
        phi: DMatrixView<'_, T>,
        drive: &DMatrix<T>,
        out: DMatrixViewMut<'_, T>,
    );
    /// `f(phi)` into `f` and `J_f(phi)^T w` into `back` (n x B each).
    fn field_and_vjp_into(
        &self,
        phi: DMatrixView<'_, T>,
        drive: &DMatrix<T>,
        w: &DMatrix<T>,
        f: DMatrixViewMut<'_, T>,
        back: DMatrixViewMut<'_, T>,
    );
}

/// A system in single precision (`solver.precision = "f32"`): its parameters rounded to f32
/// once, the free field and `J_f^T w` ([`FieldKernels`]) and the transposed product at a
/// fixed phi (RBP's adjoint).
pub trait SinglePrecision: FieldKernels<f32> {
    /// What `J_f(phi)^T` needs at phi, computed once (the rate net: the slopes s'(v)).
    fn linearization(&self, phi: DMatrixView<'_, f32>) -> DMatrix<f32>;
    /// `J_f(phi)^T w` into `out` (n x B) from `lin = linearization(phi)`.
    fn vjp_linearized_into(
        &self,
        lin: &DMatrix<f32>,
        w: &DMatrix<f32>,
        out: DMatrixViewMut<'_, f32>,
    );
}

/// LCP-KP (spec 3.2): learned weights stand in for the transposed weights of `J_f^T` in the
/// controller's feedback path.
pub trait KolenPollack<L>: Sync {
    /// The feedback tensors at their initial values drawn from `seed`.
    fn init_feedback(&self, seed: u64) -> Params;
    /// For each weight a feedback tensor stands in for, that weight's update transposed
    /// (`update` has the layout of the system's parameters).
    fn transposed_update(&self, update: &Params) -> Params;
    /// [`EquilibriumSystem::linearize`] with the feedback weights in place of the transposes:
    /// its `vjp_at` and `second_order_at` are then the feedback path's.
    fn linearize_with_feedback(
        &self,
        phi: &DMatrix<f64>,
        x: &DMatrix<f64>,
        psi: Option<&DMatrix<f64>>,
        feedback: &Arc<Params>,
    ) -> L;
    /// `(f(phi), feedback-path product of w)` in one call.
    fn field_and_feedback(
        &self,
        phi: &DMatrix<f64>,
        x: &DMatrix<f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
        feedback: &Arc<Params>,
    ) -> (DMatrix<f64>, DMatrix<f64>);
    /// The angle (degrees) between each feedback tensor and the transpose it stands in for.
    fn feedback_angles(&self, feedback: &Params) -> Vec<f64>;
    /// Indices of the parameters that decay with the feedback weights (spec 3.2).
    fn decaying_params(&self) -> Vec<usize>;
}

/// The inner problem of meta-learning (spec 7.1): `f = -grad L_in(phi) - lambda (phi - theta)`,
/// so `J_f = -(H_in + lambda I)` is symmetric (negative definite at a strict minimiser) and
/// `(d_theta f)^T w = lambda w` per column.
pub trait InnerProblem: Sync {
    /// The pull lambda towards theta.
    fn pull(&self) -> f64;
}

/// LCP-LF (spec 3.3): the update takes the control of the non-loss rows as the rate change
/// it causes.
pub trait RateChange: Sync {
    /// psi with its e rows replaced by the rate change (rate net: `s'(v) * e`).
    fn rate_change(&self, phi: &DMatrix<f64>, psi: &DMatrix<f64>) -> DMatrix<f64>;
}
