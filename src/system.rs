//! The network coupled to its least-control controller (spec 3, LCP-DI), as one ODE on a
//! flat state per sample. Layout of a state column (n = n_hidden + n_out model units):
//!
//! ```text
//! free:        z = (phi)                    phi = (v, y) for the rate network
//! controlled:  z = (phi, u_i, e)            u_i: n_out integral state, e: n_hidden control
//! ```
//!
//! with the residual r (the vector field in state units, `tau dz/dt = r`):
//!
//! ```text
//! r_phi = f(phi) + psi,           psi = (e, u),  u = k_i u_i - k_p grad_y L
//! r_u_i = -grad_y L - alpha u_i
//! r_e   = [J_f(phi)^T psi]_hidden    (rate net: -e + s'(v) * (W^T e + D^T u))
//! ```
//!
//! Time constants: tau_v for phi, tau_u for u_i, tau_e for e.
//!
//! The hidden control e is produced as [`Feedback`] says: dynamic inversion (above, LCP-DI),
//! learned Kolen-Pollack weights in place of the transposes (`r_e = -e + s'(v) * (B e + G u)`,
//! LCP-KP), or the instant linear feedback `e = Q u` (LCP-LF: no e rows in the state).

use crate::error::{ensure_finite, ensure_non_negative, ensure_positive, LcsimError, Result};
use crate::loss::Loss;
use crate::model::EquilibriumModel;
use crate::params::Params;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::sync::Arc;

/// How the control e that reaches the hidden units is produced (spec 3.1-3.3).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Feedback {
    /// LCP-DI: `tau_e de/dt = [J_f(phi)^T psi]_hidden`.
    #[default]
    DynamicInversion,
    /// LCP-KP: `J_f^T` with its transposed weights replaced by learned ones
    /// ([`EquilibriumModel::init_feedback`]'s layout; rate net: B, G).
    KolenPollack(Arc<Params>),
    /// LCP-LF: `e = Q u` at every instant (Q: n_hidden x n_out).
    Linear(Arc<DMatrix<f64>>),
}

impl Feedback {
    /// The learned weights of the feedback path (KP), if any.
    fn learned(&self) -> Option<&Arc<Params>> {
        match self {
            Feedback::KolenPollack(p) => Some(p),
            _ => None,
        }
    }
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

/// The loss read from the output units, with its explicit per-sample scale: the
/// controller of each sample is driven by `scale * grad_y L`, and per-sample updates,
/// gradients and H are combined as `combine * sum over samples`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Objective {
    pub loss: Loss,
    pub scale: f64,
    pub combine: f64,
}

impl Objective {
    /// The objective of a batch of `batch` samples.
    pub fn new(loss: Loss, loss_scale: LossScale, batch: usize) -> Self {
        let b = batch.max(1) as f64;
        match loss_scale {
            LossScale::BatchMean => Objective {
                loss,
                scale: 1.0 / b,
                combine: 1.0,
            },
            LossScale::PerSample => Objective {
                loss,
                scale: 1.0,
                combine: 1.0 / b,
            },
        }
    }
}

/// The ODE of one batch: a model, its inputs and targets, and optionally the controller.
#[derive(Debug)]
pub struct CoupledSystem<'m, M: EquilibriumModel> {
    model: &'m M,
    inputs: DMatrix<f64>,
    /// `model.input_drive(inputs)`, computed once.
    drive: DMatrix<f64>,
    targets: DMatrix<f64>,
    objective: Objective,
    tau_v: f64,
    controller: Option<ControllerSettings>,
    feedback: Feedback,
}

impl<M: EquilibriumModel> Clone for CoupledSystem<'_, M> {
    fn clone(&self) -> Self {
        CoupledSystem {
            model: self.model,
            inputs: self.inputs.clone(),
            drive: self.drive.clone(),
            targets: self.targets.clone(),
            objective: self.objective,
            tau_v: self.tau_v,
            controller: self.controller,
            feedback: self.feedback.clone(),
        }
    }
}

impl<'m, M: EquilibriumModel> CoupledSystem<'m, M> {
    /// The free system (`controller = None`) or the LCP-DI controlled system for a batch
    /// of inputs (n_x x B) and targets (n_out x B).
    pub fn new(
        model: &'m M,
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
        let check = |field: &str, m: &DMatrix<f64>, rows: usize| {
            if m.nrows() != rows || m.ncols() != inputs.ncols() || m.ncols() == 0 {
                return Err(LcsimError::Shape {
                    field: field.into(),
                    expected: format!("{rows} x B with B >= 1 equal for inputs and targets"),
                    found: format!("{} x {}", m.nrows(), m.ncols()),
                });
            }
            ensure_finite(field, m.as_slice())
        };
        check("inputs", &inputs, model.input_dim())?;
        check("targets", &targets, model.output_dim())?;
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

    /// The same system with the hidden control produced by `feedback` (checked against the
    /// model's shapes).
    pub fn with_feedback(mut self, feedback: Feedback) -> Result<Self> {
        let shape_error = |field: &str, expected: String, found: String| LcsimError::Shape {
            field: field.into(),
            expected,
            found,
        };
        match &feedback {
            Feedback::DynamicInversion => {}
            Feedback::KolenPollack(p) => {
                let layout = self.model.init_feedback(0);
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
                let shape = (self.model.hidden_dim(), self.model.output_dim());
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

    /// How the hidden control is produced.
    pub fn feedback(&self) -> &Feedback {
        &self.feedback
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
            objective: self.objective,
            tau_v: self.tau_v,
            controller: self.controller,
            feedback: self.feedback.clone(),
        }
    }

    /// The model.
    pub fn model(&self) -> &'m M {
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
    /// Targets, n_out x B.
    pub fn targets(&self) -> &DMatrix<f64> {
        &self.targets
    }
    /// The loss and its scale.
    pub fn objective(&self) -> Objective {
        self.objective
    }
    /// The controller, if on.
    pub fn controller(&self) -> Option<&ControllerSettings> {
        self.controller.as_ref()
    }
    /// Time constant tau_v of the network units.
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
    /// Rows of the output units y (the last rows of phi).
    pub fn output_rows(&self) -> Range<usize> {
        let n = self.model.state_dim();
        n - self.model.output_dim()..n
    }
    /// Rows of the integral controller u_i (empty when free).
    pub fn integral_rows(&self) -> Range<usize> {
        let n = self.model.state_dim();
        let k = if self.controller.is_some() {
            self.model.output_dim()
        } else {
            0
        };
        n..n + k
    }
    /// Rows of the hidden control e (empty when free, and for the instant `e = Q u` of LCP-LF).
    pub fn control_rows(&self) -> Range<usize> {
        let start = self.integral_rows().end;
        let k = match (&self.controller, &self.feedback) {
            (Some(_), Feedback::DynamicInversion | Feedback::KolenPollack(_)) => {
                self.model.hidden_dim()
            }
            _ => 0,
        };
        start..start + k
    }
    /// Dimension of a state column.
    pub fn dim(&self) -> usize {
        self.control_rows().end
    }

    /// The relaxation's start: zeros, as the reference.
    pub fn initial_state(&self) -> DMatrix<f64> {
        DMatrix::zeros(self.dim(), self.batch())
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
        let mut z = self.initial_state();
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

    /// `scale * grad_y L(y, target)` at the output rows of phi.
    pub fn output_gradient(&self, phi: &DMatrix<f64>) -> DMatrix<f64> {
        let y = phi.rows_range(self.output_rows()).into_owned();
        self.objective.loss.gradient(&y, &self.targets) * self.objective.scale
    }

    /// `scale * L(y, target)` per sample.
    pub fn output_loss(&self, phi: &DMatrix<f64>) -> Vec<f64> {
        let y = phi.rows_range(self.output_rows()).into_owned();
        let s = self.objective.scale;
        let values = self.objective.loss.values(&y, &self.targets);
        values.into_iter().map(|l| s * l).collect()
    }

    /// The control psi = (e, u) that the controller applies to phi (zeros when free);
    /// `u = k_i u_i - k_p grad_y L`, and `e = Q u` for LCP-LF.
    pub fn control(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        let g = self.controller.map(|_| self.output_gradient(&self.phi(z)));
        self.control_with_gradient(z, g.as_ref())
    }

    /// [`CoupledSystem::control`] given `g = scale * grad_y L` (None when free).
    fn control_with_gradient(&self, z: &DMatrix<f64>, g: Option<&DMatrix<f64>>) -> DMatrix<f64> {
        let mut psi = DMatrix::zeros(self.model.state_dim(), z.ncols());
        if let (Some(c), Some(g)) = (&self.controller, g) {
            let u = z.rows_range(self.integral_rows()) * c.k_i - g * c.k_p;
            let n_h = self.model.hidden_dim();
            match &self.feedback {
                Feedback::Linear(q) => psi.rows_mut(0, n_h).copy_from(&(&**q * &u)),
                _ => psi
                    .rows_mut(0, n_h)
                    .copy_from(&z.rows_range(self.control_rows())),
            }
            psi.rows_range_mut(self.output_rows()).copy_from(&u);
        }
        psi
    }

    /// The residual `r(z) = tau * dz/dt` (see the module doc).
    pub fn residual(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        let phi = self.phi(z);
        let mut r = DMatrix::zeros(self.dim(), z.ncols());
        let Some(c) = &self.controller else {
            r.copy_from(&self.model.vector_field_driven(&phi, &self.drive));
            return r;
        };
        let g = self.output_gradient(&phi);
        let psi = self.control_with_gradient(z, Some(&g));
        let r_ui = -&g - z.rows_range(self.integral_rows()) * c.alpha;
        r.rows_range_mut(self.integral_rows()).copy_from(&r_ui);
        let f = if let Feedback::Linear(_) = self.feedback {
            self.model.vector_field_driven(&phi, &self.drive)
        } else {
            let (f, back) = self.model.field_and_vjp(
                &phi,
                &self.inputs,
                &self.drive,
                &psi,
                self.feedback.learned(),
            );
            r.rows_range_mut(self.control_rows())
                .copy_from(&back.rows(0, self.model.hidden_dim()));
            f
        };
        r.rows_range_mut(self.phi_rows()).copy_from(&(f + &psi));
        r
    }

    /// The exact directional derivative of the residual, `(d r / d z) dz`.
    pub fn residual_jvp(&self, z: &DMatrix<f64>, dz: &DMatrix<f64>) -> DMatrix<f64> {
        self.jacobian_at(z)(dz)
    }

    /// The Jacobian action `dz -> (d r / d z)(z) dz` at a fixed z, for many dz: the model is
    /// linearised once (no nonlinearity is evaluated per product).
    pub fn jacobian_at<'a>(
        &'a self,
        z: &DMatrix<f64>,
    ) -> impl Fn(&DMatrix<f64>) -> DMatrix<f64> + 'a {
        let phi = self.phi(z);
        let psi = self.controller.map(|_| self.control(z));
        let lin = self
            .model
            .linearize(&phi, &self.inputs, psi.as_ref(), self.feedback.learned());
        let y = phi.rows_range(self.output_rows()).into_owned();
        move |dz: &DMatrix<f64>| {
            let dphi = dz.rows_range(self.phi_rows()).into_owned();
            let mut out = DMatrix::zeros(self.dim(), dz.ncols());
            let mut d_phi = self.model.jvp_at(&lin, &dphi);
            if let Some(c) = &self.controller {
                let dy = dphi.rows_range(self.output_rows()).into_owned();
                let h_dy = self.objective.loss.hessian_vector(&y, &dy) * self.objective.scale;
                let du_i = dz.rows_range(self.integral_rows()).into_owned();
                let n_h = self.model.hidden_dim();
                let mut dpsi = DMatrix::zeros(self.model.state_dim(), dz.ncols());
                let du = &du_i * c.k_i - &h_dy * c.k_p;
                match &self.feedback {
                    Feedback::Linear(q) => dpsi.rows_mut(0, n_h).copy_from(&(&**q * &du)),
                    _ => dpsi
                        .rows_mut(0, n_h)
                        .copy_from(&dz.rows_range(self.control_rows())),
                }
                dpsi.rows_range_mut(self.output_rows()).copy_from(&du);
                d_phi += &dpsi;
                out.rows_range_mut(self.integral_rows())
                    .copy_from(&(-h_dy - du_i * c.alpha));
                if !self.control_rows().is_empty() {
                    let d_back =
                        self.model.vjp_at(&lin, &dpsi) + self.model.vjp_jvp_at(&lin, &dphi);
                    out.rows_range_mut(self.control_rows())
                        .copy_from(&d_back.rows(0, n_h));
                }
            }
            out.rows_range_mut(self.phi_rows()).copy_from(&d_phi);
            out
        }
    }
}
