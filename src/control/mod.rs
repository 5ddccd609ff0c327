//! The controlled system (spec 3): an [`EquilibriumSystem`] coupled to its least-control
//! controller, as one ODE on a flat state per sample. With R the system's loss rows (k of
//! them) and C the rows the control e drives, a state column is
//!
//! ```text
//! free:        z = (phi)
//! controlled:  z = (phi, u_i, e)            u_i: k integral states, e: |C| controls
//! ```
//!
//! with the residual r (the vector field in state units, `tau dz/dt = r`),
//! `u = k_i u_i - k_p grad_R L` and, by the system's [`ControlEntry`]:
//!
//! ```text
//! Readout (C = the other rows):  psi = (e on C, u on R),  r_e = [J_f^T psi]_C
//!                                (rate net: -e + s'(v) * (W^T e + D^T u))
//! Everywhere (C = all rows):     psi = e,                 r_e = J_f^T e + (u on R)
//! r_phi = f(phi) + psi,          r_u_i = -grad_R L - alpha u_i
//! ```
//!
//! Both have the minimiser of `E_alpha = 1/2 |f|^2 + beta L` as equilibrium (`J_f^T psi* =
//! beta grad L`, spec 2.1). Time constants: tau_v for phi, tau_u for u_i, tau_e for e.
//!
//! The control e is produced as [`Feedback`] says: dynamic inversion (above, LCP-DI),
//! learned Kolen-Pollack weights in place of the transposes (`r_e = -e + s'(v) * (B e + G u)`,
//! LCP-KP, a [`crate::system::KolenPollack`] system), or the instant linear feedback `e = Q u`
//! (LCP-LF: no e rows in the state).

use crate::error::{ensure_finite, ensure_non_negative, ensure_positive, LcsimError, Result};
use crate::numerics::real::Real;
use crate::solve::{
    forward_euler, solve_batch, BatchSteadyState, EulerField, EulerSettings, JacobianAction,
    SolverSettings, SteadyState, StopCriterion, VectorField,
};
use crate::system::loss::{Loss, StateLoss};
use crate::system::params::Params;
use crate::system::{ControlEntry, EquilibriumSystem, FieldKernels, SinglePrecision};
use nalgebra::{DMatrix, DMatrixView, DMatrixViewMut};
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

pub mod branch;

/// How the control e that reaches the hidden units is produced (spec 3.1-3.3).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Feedback {
    /// LCP-DI: `tau_e de/dt = [J_f(phi)^T psi]_hidden`.
    #[default]
    DynamicInversion,
    /// LCP-KP: `J_f^T` with its transposed weights replaced by learned ones
    /// ([`crate::system::KolenPollack::init_feedback`]'s layout; rate net: B, G).
    KolenPollack(Arc<Params>),
    /// LCP-LF: `e = Q u` at every instant (Q: |C| x k).
    Linear(Arc<DMatrix<f64>>),
}

/// Gains and time constants of the leaky PI controller and the dynamic inversion (spec 3).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSettings {
    /// Time constant of the integral controller u_i.
    pub tau_u: f64,
    /// Time constant of the hidden control e.
    pub tau_e: f64,
    /// Leak alpha of the integral controller (> 0).
    pub alpha: f64,
    /// Integral gain k_i.
    pub k_i: f64,
    /// Proportional gain k_p (reference: 0).
    pub k_p: f64,
}

impl Default for ControllerSettings {
    /// Reference settings: all tau = 1, alpha = 0.1, k_i = 1, k_p = 0.
    fn default() -> Self {
        ControllerSettings {
            tau_u: 1.0,
            tau_e: 1.0,
            alpha: 0.1,
            k_i: 1.0,
            k_p: 0.0,
        }
    }
}

impl ControllerSettings {
    /// `beta = k_i / alpha + k_p`, the weight of the loss in E_alpha (spec 2.1).
    pub fn beta(&self) -> f64 {
        self.k_i / self.alpha + self.k_p
    }

    /// Checks every field (names as in the config file).
    pub fn validate(&self) -> Result<()> {
        ensure_positive("dynamics.tau_u", self.tau_u)?;
        ensure_positive("dynamics.tau_e", self.tau_e)?;
        ensure_positive("controller.alpha", self.alpha)?;
        ensure_non_negative("controller.k_i", self.k_i)?;
        ensure_non_negative("controller.k_p", self.k_p)?;
        if self.k_i == 0.0 && self.k_p == 0.0 {
            return Err(crate::error::invalid(
                "controller.k_i",
                0,
                "k_i > 0 or k_p > 0 (with both zero there is no control)",
            ));
        }
        Ok(())
    }
}

/// How a batch's loss is scaled and its per-sample results combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum LossScale {
    /// The reference: the loss is the batch mean, so each sample's controller is driven by
    /// `grad_y L / B`, and per-sample updates are summed.
    #[default]
    BatchMean,
    /// Each controller is driven by the full `grad_y L`; per-sample updates are averaged.
    PerSample,
}

/// The loss on the state with its explicit per-sample scale: the controller of each sample
/// is driven by `scale * grad_R L`, and per-sample updates, gradients and H are combined as
/// `combine * sum over samples`.
#[derive(Clone, Debug)]
pub struct Objective {
    pub loss: Arc<dyn StateLoss>,
    pub scale: f64,
    pub combine: f64,
}

impl Objective {
    /// The objective of a batch of `batch` samples under a readout [`Loss`].
    pub fn new(loss: Loss, loss_scale: LossScale, batch: usize) -> Self {
        Objective::of(Arc::new(loss), loss_scale, batch)
    }

    /// The objective of a batch of `batch` samples under any loss on the state.
    pub fn of(loss: Arc<dyn StateLoss>, loss_scale: LossScale, batch: usize) -> Self {
        let b = batch.max(1) as f64;
        let (scale, combine) = match loss_scale {
            LossScale::BatchMean => (1.0 / b, 1.0),
            LossScale::PerSample => (1.0, 1.0 / b),
        };
        Objective {
            loss,
            scale,
            combine,
        }
    }
}

/// The rows of phi that the control e drives (C in the module doc).
pub fn controlled_rows<S: EquilibriumSystem>(system: &S) -> Range<usize> {
    match system.control_entry() {
        ControlEntry::Readout => 0..system.state_dim() - system.loss_dim(),
        ControlEntry::Everywhere => 0..system.state_dim(),
    }
}

/// The ODE of one batch: a system, its inputs and targets, and optionally the controller.
#[derive(Debug)]
pub struct CoupledSystem<'m, S: EquilibriumSystem> {
    model: &'m S,
    inputs: DMatrix<f64>,
    /// `model.input_drive(inputs)`, computed once.
    drive: DMatrix<f64>,
    targets: DMatrix<f64>,
    objective: Objective,
    tau_v: f64,
    controller: Option<ControllerSettings>,
    feedback: Feedback,
}

impl<S: EquilibriumSystem> Clone for CoupledSystem<'_, S> {
    fn clone(&self) -> Self {
        CoupledSystem {
            model: self.model,
            inputs: self.inputs.clone(),
            drive: self.drive.clone(),
            targets: self.targets.clone(),
            objective: self.objective.clone(),
            tau_v: self.tau_v,
            controller: self.controller,
            feedback: self.feedback.clone(),
        }
    }
}

impl<'m, S: EquilibriumSystem> CoupledSystem<'m, S> {
    /// The free system (`controller = None`) or the LCP-DI controlled system for a batch
    /// of inputs (n_x x B) and targets (one column per sample).
    pub fn new(
        model: &'m S,
        inputs: DMatrix<f64>,
        targets: DMatrix<f64>,
        objective: Objective,
        tau_v: f64,
        controller: Option<ControllerSettings>,
    ) -> Result<Self> {
        ensure_positive("dynamics.tau_v", tau_v)?;
        ensure_positive("loss_scale", objective.scale)?;
        if let Some(c) = &controller {
            c.validate()?;
        }
        let rows = model.loss_rows();
        let n = model.state_dim();
        let readout_at_end = rows.end == n;
        if rows.end > n || (model.control_entry() == ControlEntry::Readout && !readout_at_end) {
            return Err(LcsimError::Shape {
                field: "loss_rows".into(),
                expected: format!("rows within 0..{n} (readout rows: the last ones)"),
                found: format!("{rows:?}"),
            });
        }
        let check = |field: &str, m: &DMatrix<f64>, rows: Option<usize>| {
            let rows_ok = rows.is_none_or(|r| m.nrows() == r);
            if !rows_ok || m.ncols() != inputs.ncols() || m.ncols() == 0 {
                return Err(LcsimError::Shape {
                    field: field.into(),
                    expected: match rows {
                        Some(r) => format!("{r} x B with B >= 1 equal for inputs and targets"),
                        None => "B columns with B >= 1 equal for inputs and targets".into(),
                    },
                    found: format!("{} x {}", m.nrows(), m.ncols()),
                });
            }
            ensure_finite(field, m.as_slice())
        };
        check("inputs", &inputs, Some(model.input_dim()))?;
        let target_rows =
            matches!(model.control_entry(), ControlEntry::Readout).then(|| model.loss_dim());
        check("targets", &targets, target_rows)?;
        Ok(CoupledSystem {
            model,
            drive: model.input_drive(&inputs),
            inputs,
            targets,
            objective,
            tau_v,
            controller,
            feedback: Feedback::DynamicInversion,
        })
    }

    /// The same system with the control e produced by `feedback` (checked against the
    /// system's shapes and capabilities).
    pub fn with_feedback(mut self, feedback: Feedback) -> Result<Self> {
        let shape_error = |field: &str, expected: String, found: String| LcsimError::Shape {
            field: field.into(),
            expected,
            found,
        };
        match &feedback {
            Feedback::DynamicInversion => {}
            Feedback::KolenPollack(p) => {
                let Some(kp) = self.model.kolen_pollack() else {
                    return Err(crate::error::invalid(
                        "method.name",
                        "lcp-kp",
                        "a method this system offers (it has no Kolen-Pollack feedback weights)",
                    ));
                };
                let layout = kp.init_feedback(0);
                for ((name, m), (_, l)) in p.iter().zip(layout.iter()) {
                    if m.shape() != l.shape() {
                        return Err(shape_error(
                            name,
                            format!("{:?}", l.shape()),
                            format!("{:?}", m.shape()),
                        ));
                    }
                    ensure_finite(name, m.as_slice())?;
                }
                if p.len() != layout.len() {
                    let names: Vec<&str> = layout.names().collect();
                    return Err(shape_error(
                        "feedback",
                        format!("tensors {names:?}"),
                        format!("{} tensors", p.len()),
                    ));
                }
            }
            Feedback::Linear(q) => {
                let shape = (controlled_rows(self.model).len(), self.model.loss_dim());
                if q.shape() != shape {
                    return Err(shape_error(
                        "Q",
                        format!("{shape:?}"),
                        format!("{:?}", q.shape()),
                    ));
                }
                ensure_finite("Q", q.as_slice())?;
            }
        }
        self.feedback = feedback;
        Ok(self)
    }

    /// The same system with the controller's gains scaled by the control strength
    /// `lambda >= 0`: `k_i -> lambda k_i`, `k_p -> lambda k_p`, so `beta -> lambda beta`
    /// (alpha and the time constants stay). At `lambda = 0` the control u vanishes and
    /// `(phi0, u_i = -grad_R L(phi0) / alpha, e = 0)` is an equilibrium. Without a
    /// controller, or for a negative or non-finite lambda, an error.
    pub fn with_control_strength(&self, lambda: f64) -> Result<Self> {
        ensure_non_negative("lambda", lambda)?;
        let Some(c) = self.controller else {
            return Err(crate::error::invalid(
                "controller",
                "none",
                "a controlled system (the control strength scales its gains)",
            ));
        };
        Ok(CoupledSystem {
            controller: Some(ControllerSettings {
                k_i: c.k_i * lambda,
                k_p: c.k_p * lambda,
                ..c
            }),
            ..self.clone()
        })
    }

    /// How the control e is produced.
    pub fn feedback(&self) -> &Feedback {
        &self.feedback
    }

    /// The same system under the LCP-DI `controller` (the input drive kept, not recomputed).
    pub fn with_controller(&self, controller: ControllerSettings) -> Result<Self> {
        controller.validate()?;
        Ok(CoupledSystem {
            controller: Some(controller),
            feedback: Feedback::DynamicInversion,
            ..self.clone()
        })
    }

    /// The same system without its controller.
    pub fn free(&self) -> Self {
        CoupledSystem {
            controller: None,
            ..self.clone()
        }
    }

    /// The system of sample j alone (one column).
    pub fn sample(&self, j: usize) -> Self {
        self.select_samples(&[j])
    }

    /// The system of the samples `columns` (in that order).
    pub fn select_samples(&self, columns: &[usize]) -> Self {
        CoupledSystem {
            model: self.model,
            inputs: self.inputs.select_columns(columns),
            drive: self.drive.select_columns(columns),
            targets: self.targets.select_columns(columns),
            objective: self.objective.clone(),
            tau_v: self.tau_v,
            controller: self.controller,
            feedback: self.feedback.clone(),
        }
    }

    /// The equilibrium system.
    pub fn model(&self) -> &'m S {
        self.model
    }
    /// Inputs, n_x x B.
    pub fn inputs(&self) -> &DMatrix<f64> {
        &self.inputs
    }
    /// `model.input_drive(inputs)` (n x B), computed once.
    pub fn drive(&self) -> &DMatrix<f64> {
        &self.drive
    }
    /// Targets, one column per sample.
    pub fn targets(&self) -> &DMatrix<f64> {
        &self.targets
    }
    /// The loss and its scale.
    pub fn objective(&self) -> Objective {
        self.objective.clone()
    }
    /// The controller, if on.
    pub fn controller(&self) -> Option<&ControllerSettings> {
        self.controller.as_ref()
    }
    /// Time constant tau_v of the system's components.
    pub fn tau_v(&self) -> f64 {
        self.tau_v
    }
    /// Batch size B.
    pub fn batch(&self) -> usize {
        self.inputs.ncols()
    }

    /// Rows of phi in a state column.
    pub fn phi_rows(&self) -> Range<usize> {
        0..self.model.state_dim()
    }
    /// The loss rows R of phi (the rate net's output units).
    pub fn loss_rows(&self) -> Range<usize> {
        self.model.loss_rows()
    }
    /// The rows C of phi that the control e drives.
    pub fn controlled_rows(&self) -> Range<usize> {
        controlled_rows(self.model)
    }
    /// Rows of the integral controller u_i (empty when free).
    pub fn integral_rows(&self) -> Range<usize> {
        let n = self.model.state_dim();
        let k = if self.controller.is_some() {
            self.model.loss_dim()
        } else {
            0
        };
        n..n + k
    }
    /// Rows of the control e (empty when free, and for the instant `e = Q u` of LCP-LF).
    pub fn control_rows(&self) -> Range<usize> {
        let start = self.integral_rows().end;
        let k = match (&self.controller, &self.feedback) {
            (Some(_), Feedback::DynamicInversion | Feedback::KolenPollack(_)) => {
                self.controlled_rows().len()
            }
            _ => 0,
        };
        start..start + k
    }
    /// Dimension of a state column.
    pub fn dim(&self) -> usize {
        self.control_rows().end
    }

    /// The relaxation's start: the system's initial phi, the controller at rest.
    pub fn initial_state(&self) -> DMatrix<f64> {
        let mut z = DMatrix::zeros(self.dim(), self.batch());
        z.rows_range_mut(self.phi_rows())
            .copy_from(&self.model.initial_state(self.batch()));
        z
    }

    /// The state with network part `phi` (n x B) and the controller at rest (u_i = e = 0):
    /// how the controller finds a network that sits at its free equilibrium when it switches on.
    pub fn state_with_phi(&self, phi: &DMatrix<f64>) -> Result<DMatrix<f64>> {
        let n = self.model.state_dim();
        if phi.nrows() != n || phi.ncols() != self.batch() {
            return Err(LcsimError::Shape {
                field: "phi".into(),
                expected: format!("{n} x {}", self.batch()),
                found: format!("{} x {}", phi.nrows(), phi.ncols()),
            });
        }
        let mut z = DMatrix::zeros(self.dim(), self.batch());
        z.rows_range_mut(self.phi_rows()).copy_from(phi);
        Ok(z)
    }

    /// Per-row time constants of a state column.
    pub fn time_constants(&self) -> Vec<f64> {
        let mut tau = vec![self.tau_v; self.dim()];
        if let Some(c) = &self.controller {
            tau[self.integral_rows()].fill(c.tau_u);
            tau[self.control_rows()].fill(c.tau_e);
        }
        tau
    }

    /// phi of a state (all columns).
    pub fn phi(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        z.rows_range(self.phi_rows()).into_owned()
    }

    /// The loss rows `phi_R` of phi.
    fn loss_part(&self, phi: &DMatrix<f64>) -> DMatrix<f64> {
        phi.rows_range(self.loss_rows()).into_owned()
    }

    /// `scale * grad_R L(phi_R, target)` (k x B).
    pub fn loss_gradient(&self, phi: &DMatrix<f64>) -> DMatrix<f64> {
        let g = self
            .objective
            .loss
            .gradient(&self.loss_part(phi), &self.targets);
        g * self.objective.scale
    }

    /// `L(phi_R, target)` per sample, unscaled.
    pub fn loss_values(&self, phi: &DMatrix<f64>) -> Vec<f64> {
        self.objective
            .loss
            .values(&self.loss_part(phi), &self.targets)
    }

    /// `scale * L(phi_R, target)` per sample.
    pub fn losses(&self, phi: &DMatrix<f64>) -> Vec<f64> {
        let s = self.objective.scale;
        let values = self.loss_values(phi);
        values.into_iter().map(|l| s * l).collect()
    }

    /// Per-sample accuracy at phi (see [`StateLoss::accuracies`]).
    pub fn accuracies(&self, phi: &DMatrix<f64>) -> Vec<f64> {
        self.objective
            .loss
            .accuracies(&self.loss_part(phi), &self.targets)
    }

    /// `grad_phi L` (n x B): `scale * grad_R L` on the loss rows, zero elsewhere.
    pub fn state_loss_gradient(&self, phi: &DMatrix<f64>) -> DMatrix<f64> {
        let mut g = DMatrix::zeros(phi.nrows(), phi.ncols());
        g.rows_range_mut(self.loss_rows())
            .copy_from(&self.loss_gradient(phi));
        g
    }

    /// The control psi that the controller applies to phi (zeros when free).
    pub fn control(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        let g = self.controller.map(|_| self.loss_gradient(&self.phi(z)));
        self.control_with_gradient(z, g.as_ref()).0
    }

    /// `(psi, u)` given `g = scale * grad_R L` (zeros when free or without g); see the module
    /// doc. In f64, or in f32 for the single-precision residual.
    fn control_with_gradient<T: Real>(
        &self,
        z: &DMatrix<T>,
        g: Option<&DMatrix<T>>,
    ) -> (DMatrix<T>, DMatrix<T>) {
        let mut psi = DMatrix::zeros(self.model.state_dim(), z.ncols());
        let (Some(c), Some(g)) = (&self.controller, g) else {
            return (psi, DMatrix::zeros(0, z.ncols()));
        };
        let (k_i, k_p) = (T::round_from(c.k_i), T::round_from(c.k_p));
        let u = z.rows_range(self.integral_rows()) * k_i - g * k_p;
        self.place_control(
            &mut psi,
            &z.rows_range(self.control_rows()).into_owned(),
            &u,
        );
        (psi, u)
    }

    /// Writes the control of e (or `Q u`) on C and, for readouts, u on R into `psi`.
    fn place_control<T: Real>(&self, psi: &mut DMatrix<T>, e: &DMatrix<T>, u: &DMatrix<T>) {
        let rows = self.controlled_rows();
        match &self.feedback {
            Feedback::Linear(q) => psi
                .rows_range_mut(rows)
                .copy_from(&(q.map(T::round_from) * u)),
            _ => psi.rows_range_mut(rows).copy_from(e),
        }
        if self.model.control_entry() == ControlEntry::Readout {
            psi.rows_range_mut(self.loss_rows()).copy_from(u);
        }
    }

    /// `r_e` from the transposed (or feedback-path) product `back` and u (module doc).
    fn control_residual(&self, back: &DMatrix<f64>, u: &DMatrix<f64>) -> DMatrix<f64> {
        let mut r_e = back.rows_range(self.controlled_rows()).into_owned();
        if self.model.control_entry() == ControlEntry::Everywhere {
            let rows = self.loss_rows();
            let mut part = r_e.rows_range_mut(rows);
            part += u;
        }
        r_e
    }

    /// The linearisation at phi with the second-order signal psi, on the feedback path.
    fn linearize(&self, phi: &DMatrix<f64>, psi: Option<&DMatrix<f64>>) -> S::Linearization {
        match (&self.feedback, self.model.kolen_pollack()) {
            (Feedback::KolenPollack(fb), Some(kp)) => {
                kp.linearize_with_feedback(phi, &self.inputs, psi, fb)
            }
            _ => self.model.linearize(phi, &self.inputs, psi),
        }
    }

    /// The residual `r(z) = tau * dz/dt` (see the module doc).
    pub fn residual(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        let phi = self.phi(z);
        let mut r = DMatrix::zeros(self.dim(), z.ncols());
        let Some(c) = &self.controller else {
            r.copy_from(&self.model.vector_field_driven(&phi, &self.drive));
            return r;
        };
        let g = self.loss_gradient(&phi);
        let (psi, u) = self.control_with_gradient(z, Some(&g));
        let r_ui = -&g - z.rows_range(self.integral_rows()) * c.alpha;
        r.rows_range_mut(self.integral_rows()).copy_from(&r_ui);
        let (x, drive) = (&self.inputs, &self.drive);
        let f = match (&self.feedback, self.model.kolen_pollack()) {
            (Feedback::Linear(_), _) => self.model.vector_field_driven(&phi, drive),
            (Feedback::KolenPollack(fb), Some(kp)) => {
                let (f, back) = kp.field_and_feedback(&phi, x, drive, &psi, fb);
                r.rows_range_mut(self.control_rows())
                    .copy_from(&self.control_residual(&back, &u));
                f
            }
            _ => {
                let (f, back) = self.model.field_and_vjp(&phi, x, drive, &psi);
                r.rows_range_mut(self.control_rows())
                    .copy_from(&self.control_residual(&back, &u));
                f
            }
        };
        r.rows_range_mut(self.phi_rows()).copy_from(&(f + &psi));
        r
    }

    /// [`CoupledSystem::residual`] written into `r` (dim x B) with the same arithmetic and
    /// no state-sized temporaries besides psi and `J_f^T psi` (LCP-LF and LCP-KP: a copy).
    pub fn residual_into(&self, z: &DMatrix<f64>, r: &mut DMatrix<f64>) {
        if self.controller.is_some() && !matches!(self.feedback, Feedback::DynamicInversion) {
            r.copy_from(&self.residual(z));
            return;
        }
        let kernels = SystemKernels {
            model: self.model,
            inputs: &self.inputs,
        };
        self.residual_into_with(&kernels, &self.drive, z, r);
    }

    /// The residual of the free system or of LCP-DI in scalar T, with the system's products
    /// in T (`kernels`) and its input drive in T: f64 and f32 run this same arithmetic. The
    /// loss gradient is taken in f64 (k rows) and rounded to T.
    fn residual_into_with<T: Real>(
        &self,
        kernels: &dyn FieldKernels<T>,
        drive: &DMatrix<T>,
        z: &DMatrix<T>,
        r: &mut DMatrix<T>,
    ) {
        let n = self.model.state_dim();
        let Some(c) = &self.controller else {
            kernels.vector_field_driven_into(z.rows(0, n), drive, r.rows_mut(0, n));
            return;
        };
        let loss_part = z.rows_range(self.loss_rows()).map(T::widen);
        let g = self.objective.loss.gradient(&loss_part, &self.targets) * self.objective.scale;
        let g = g.map(T::round_from);
        let (psi, u) = self.control_with_gradient(z, Some(&g));
        let (ui, alpha) = (self.integral_rows(), T::round_from(c.alpha));
        r.rows_range_mut(ui.clone())
            .zip_zip_apply(&g, &z.rows_range(ui), |r, g, ui| *r = -g - ui * alpha);
        let mut back = DMatrix::zeros(n, z.ncols());
        let rows = self.control_rows();
        kernels.field_and_vjp_into(
            z.rows(0, n),
            drive,
            &psi,
            r.rows_mut(0, n),
            back.as_view_mut(),
        );
        r.rows_mut(0, n).zip_apply(&psi, |r, p| *r += p);
        let controlled = self.controlled_rows();
        let mut r_e = r.rows_range_mut(rows);
        r_e.copy_from(&back.rows_range(controlled));
        if self.model.control_entry() == ControlEntry::Everywhere {
            let mut part = r_e.rows_range_mut(self.loss_rows());
            part += &u;
        }
    }

    /// This field in single precision (`solver.precision = "f32"`): the free system or
    /// LCP-DI of a system with a single-precision form; None otherwise.
    pub fn single_precision(&self) -> Option<SinglePrecisionField<'m, S>> {
        let dynamic_inversion = matches!(self.feedback, Feedback::DynamicInversion);
        if self.controller.is_some() && !dynamic_inversion {
            return None;
        }
        Some(SinglePrecisionField {
            kernels: self.model.single_precision()?,
            drive: self.drive.map(|x| x as f32),
            field: self.clone(),
        })
    }

    /// The exact directional derivative of the residual, `(d r / d z) dz`.
    pub fn residual_jvp(&self, z: &DMatrix<f64>, dz: &DMatrix<f64>) -> DMatrix<f64> {
        self.jacobian_at(z)(dz)
    }

    /// `d/d eps [J(phi + eps dphi)^T psi]`: the system's second-order term, or a central
    /// difference of the transposed product where the system has none (`lin` linearised at
    /// phi with psi).
    pub fn second_order(
        &self,
        lin: &S::Linearization,
        phi: &DMatrix<f64>,
        psi: &DMatrix<f64>,
        dphi: &DMatrix<f64>,
    ) -> DMatrix<f64> {
        if let Some(t) = self.model.second_order_at(lin, dphi) {
            return t;
        }
        let scale = dphi.amax();
        if scale == 0.0 {
            return DMatrix::zeros(phi.nrows(), phi.ncols());
        }
        let h = 1e-6 * (1.0 + phi.amax()) / scale;
        let at = |sign: f64| {
            let p = phi + dphi * (sign * h);
            self.model.vjp_at(&self.linearize(&p, None), psi)
        };
        (at(1.0) - at(-1.0)) / (2.0 * h)
    }

    /// The Jacobian action `dz -> (d r / d z)(z) dz` at a fixed z, for many dz: the system
    /// is linearised once (no nonlinearity is evaluated per product).
    pub fn jacobian_at<'a>(
        &'a self,
        z: &DMatrix<f64>,
    ) -> impl Fn(&DMatrix<f64>) -> DMatrix<f64> + 'a {
        let phi = self.phi(z);
        let psi = self.controller.map(|_| self.control(z));
        let lin = self.linearize(&phi, psi.as_ref());
        let y = self.loss_part(&phi);
        move |dz: &DMatrix<f64>| {
            let dphi = dz.rows_range(self.phi_rows()).into_owned();
            let mut out = DMatrix::zeros(self.dim(), dz.ncols());
            let mut d_phi = self.model.jvp_at(&lin, &dphi);
            if let (Some(c), Some(psi)) = (&self.controller, &psi) {
                let dy = self.loss_part(&dphi);
                let h_dy = self.objective.loss.hessian_vector(&y, &self.targets, &dy)
                    * self.objective.scale;
                let du_i = dz.rows_range(self.integral_rows()).into_owned();
                let du = &du_i * c.k_i - &h_dy * c.k_p;
                let mut dpsi = DMatrix::zeros(self.model.state_dim(), dz.ncols());
                let de = dz.rows_range(self.control_rows()).into_owned();
                self.place_control(&mut dpsi, &de, &du);
                d_phi += &dpsi;
                out.rows_range_mut(self.integral_rows())
                    .copy_from(&(-h_dy - du_i * c.alpha));
                if !self.control_rows().is_empty() {
                    let d_back =
                        self.model.vjp_at(&lin, &dpsi) + self.second_order(&lin, &phi, psi, &dphi);
                    out.rows_range_mut(self.control_rows())
                        .copy_from(&self.control_residual(&d_back, &du));
                }
            }
            out.rows_range_mut(self.phi_rows()).copy_from(&d_phi);
            out
        }
    }
}

impl<S: EquilibriumSystem> VectorField for CoupledSystem<'_, S> {
    fn dim(&self) -> usize {
        CoupledSystem::dim(self)
    }
    fn batch(&self) -> usize {
        CoupledSystem::batch(self)
    }
    fn select_samples(&self, columns: &[usize]) -> Self {
        CoupledSystem::select_samples(self, columns)
    }
    fn time_constants(&self) -> Vec<f64> {
        CoupledSystem::time_constants(self)
    }
    fn residual(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        CoupledSystem::residual(self, z)
    }
    fn residual_into(&self, z: &DMatrix<f64>, r: &mut DMatrix<f64>) {
        CoupledSystem::residual_into(self, z, r)
    }
    fn residual_jvp(&self, z: &DMatrix<f64>, dz: &DMatrix<f64>) -> DMatrix<f64> {
        CoupledSystem::residual_jvp(self, z, dz)
    }
    fn jacobian_at<'a>(&'a self, z: &DMatrix<f64>) -> JacobianAction<'a> {
        Box::new(CoupledSystem::jacobian_at(self, z))
    }
    fn euler_in_single_precision(
        &self,
        z0: &DMatrix<f64>,
        stop: &StopCriterion,
        euler: &EulerSettings,
    ) -> Option<Vec<SteadyState>> {
        let field = self.single_precision()?;
        Some(forward_euler(&field, &z0.map(|x| x as f32), stop, euler))
    }
}

/// A system's own products in f64, with its inputs (the f64 residual's kernels).
struct SystemKernels<'a, S: EquilibriumSystem> {
    model: &'a S,
    inputs: &'a DMatrix<f64>,
}

impl<S: EquilibriumSystem> FieldKernels<f64> for SystemKernels<'_, S> {
    fn vector_field_driven_into(
        &self,
        phi: DMatrixView<'_, f64>,
        drive: &DMatrix<f64>,
        out: DMatrixViewMut<'_, f64>,
    ) {
        self.model.vector_field_driven_into(phi, drive, out);
    }

    fn field_and_vjp_into(
        &self,
        phi: DMatrixView<'_, f64>,
        drive: &DMatrix<f64>,
        w: &DMatrix<f64>,
        f: DMatrixViewMut<'_, f64>,
        back: DMatrixViewMut<'_, f64>,
    ) {
        self.model
            .field_and_vjp_into(phi, self.inputs, drive, w, f, back);
    }
}

/// A [`CoupledSystem`] (free, or LCP-DI) stepped in single precision: the system's f32
/// products ([`EquilibriumSystem::single_precision`]) and its input drive, rounded once per
/// chunk of a solve.
pub struct SinglePrecisionField<'m, S: EquilibriumSystem> {
    field: CoupledSystem<'m, S>,
    kernels: Arc<dyn SinglePrecision>,
    drive: DMatrix<f32>,
}

impl<S: EquilibriumSystem> EulerField<f32> for SinglePrecisionField<'_, S> {
    fn dim(&self) -> usize {
        self.field.dim()
    }
    fn time_constants(&self) -> Vec<f64> {
        self.field.time_constants()
    }
    fn residual_into(&self, z: &DMatrix<f32>, r: &mut DMatrix<f32>) {
        self.field
            .residual_into_with(&*self.kernels, &self.drive, z, r);
    }
    fn select_samples(&self, columns: &[usize]) -> Self {
        SinglePrecisionField {
            field: self.field.select_samples(columns),
            kernels: self.kernels.clone(),
            drive: self.drive.select_columns(columns),
        }
    }
}

/// Relaxes every sample of a (free or controlled) system from its initial state.
pub fn relax<S: EquilibriumSystem>(
    system: &CoupledSystem<'_, S>,
    opts: &SolverSettings,
) -> BatchSteadyState {
    solve_batch(system, &system.initial_state(), opts)
}

/// The free equilibrium phi0 (n x B): the system's exact one where it has it (a layered
/// net's forward pass), else a relaxation of `free` (with its records).
pub fn free_equilibrium<S: EquilibriumSystem>(
    free: &CoupledSystem<'_, S>,
    opts: &SolverSettings,
) -> (DMatrix<f64>, Option<BatchSteadyState>) {
    match free.model().exact_free_equilibrium(free.inputs()) {
        Some(phi0) => (phi0, None),
        None => {
            let b = relax(free, opts);
            (free.phi(&b.states), Some(b))
        }
    }
}
