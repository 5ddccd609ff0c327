//! LCP-EBD (spec 3.4): the controlled equilibrium found without a controller, by
//! descending the relaxed energy of spec 2.1 directly,
//!
//! ```text
//! E_alpha(phi) = 1/2 |f(phi, theta, x)|^2 + beta * scale * L(y(phi)),   beta = k_i / alpha + k_p
//! tau_v dphi/dt = -grad E_alpha(phi) = -(J_f(phi)^T f(phi) + beta * grad_phi L)
//! ```
//!
//! either as a gradient flow solved to steady state by any solver ([`EnergyDescent`] is a
//! [`VectorField`]) or by Adam on the state as the reference ([`adam_on_state`]). The control
//! is then read off as `psi* = -f(phi*)`; its minimiser is the LCP-DI controlled equilibrium.

use crate::control::CoupledSystem;
use crate::error::{ensure_positive, invalid, Result};
use crate::solve::{
    diverged, residual_size, BatchSteadyState, JacobianAction, SolverMethod, SteadyState,
    StopCriterion, Termination, VectorField,
};
use crate::system::EquilibriumSystem;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

/// The gradient flow on `E_alpha` of one batch (state: phi, n x B).
#[derive(Debug)]
pub struct EnergyDescent<'m, M: EquilibriumSystem> {
    system: CoupledSystem<'m, M>,
    beta: f64,
}

impl<'m, M: EquilibriumSystem> EnergyDescent<'m, M> {
    /// The flow for the network, inputs and objective of `system` (its controller, if any,
    /// is not used) with loss weight `beta > 0`.
    pub fn new(system: &CoupledSystem<'m, M>, beta: f64) -> Result<Self> {
        ensure_positive("beta", beta)?;
        Ok(EnergyDescent {
            system: system.free(),
            beta,
        })
    }

    /// The free system whose energy is descended.
    pub fn system(&self) -> &CoupledSystem<'m, M> {
        &self.system
    }

    /// `grad_phi E_alpha = J_f^T f + beta * grad_phi L` (n x B).
    pub fn energy_gradient(&self, phi: &DMatrix<f64>) -> DMatrix<f64> {
        let s = &self.system;
        let (model, x) = (s.model(), s.inputs());
        let f = model.vector_field_driven(phi, s.drive());
        let mut g = model.vjp(phi, x, &f);
        let mut gy = g.rows_range_mut(s.loss_rows());
        gy += s.loss_gradient(phi) * self.beta;
        g
    }

    /// `E_alpha` of each sample (column).
    pub fn energy(&self, phi: &DMatrix<f64>) -> Vec<f64> {
        crate::learn::plasticity::relaxed_energy(&self.system, phi, self.beta)
    }

    /// The control at an energy minimum, `psi* = -f(phi*)` (n x B):
    /// `e* = v* - F(x, v*)`, `u* = y* - D s(v*) - d` for the rate network.
    pub fn control(&self, phi: &DMatrix<f64>) -> DMatrix<f64> {
        -self
            .system
            .model()
            .vector_field_driven(phi, self.system.drive())
    }
}

impl<M: EquilibriumSystem> VectorField for EnergyDescent<'_, M> {
    fn dim(&self) -> usize {
        self.system.model().state_dim()
    }
    fn batch(&self) -> usize {
        self.system.batch()
    }
    fn select_samples(&self, columns: &[usize]) -> Self {
        EnergyDescent {
            system: self.system.select_samples(columns),
            beta: self.beta,
        }
    }
    fn time_constants(&self) -> Vec<f64> {
        self.system.time_constants()
    }
    fn residual(&self, phi: &DMatrix<f64>) -> DMatrix<f64> {
        -self.energy_gradient(phi)
    }
    fn residual_jvp(&self, phi: &DMatrix<f64>, dphi: &DMatrix<f64>) -> DMatrix<f64> {
        self.jacobian_at(phi)(dphi)
    }
    /// `-(Hessian of E_alpha) dphi = -(J^T J dphi + d/d eps[J(phi + eps dphi)^T] f
    /// + beta * H_L dy)`, with the model linearised once.
    fn jacobian_at<'a>(&'a self, phi: &DMatrix<f64>) -> JacobianAction<'a> {
        let s = &self.system;
        let model = s.model();
        let f = model.vector_field_driven(phi, s.drive());
        let lin = model.linearize(phi, s.inputs(), Some(&f));
        let y = phi.rows_range(s.loss_rows()).into_owned();
        let (objective, phi) = (s.objective(), phi.clone());
        Box::new(move |dphi: &DMatrix<f64>| {
            let mut h = model.vjp_at(&lin, &model.jvp_at(&lin, dphi));
            h += s.second_order(&lin, &phi, &f, dphi);
            let dy = dphi.rows_range(s.loss_rows()).into_owned();
            let mut hy = h.rows_range_mut(s.loss_rows());
            hy +=
                objective.loss.hessian_vector(&y, s.targets(), &dy) * (objective.scale * self.beta);
            -h
        })
    }
    /// The LCP-EBD equilibrium is a minimiser of E_alpha reached by descent, not the end of
    /// a physical flow: no flow certificate (the stability check rejects saddles).
    fn certify_against_flow(&self) -> bool {
        false
    }
}

/// How LCP-EBD descends `E_alpha`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum EnergyDescentMethod {
    /// The gradient flow `tau_v dphi/dt = -grad E_alpha`, solved by `[solver]`.
    #[default]
    Flow,
    /// Adam on phi with a fixed step count, as the reference.
    Adam,
}

/// Adam on the state (`torch.optim.Adam` on phi, betas 0.9 / 0.999, eps 1e-8).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateAdam {
    pub learning_rate: f64,
    pub steps: usize,
}

impl StateAdam {
    /// Errors name the config keys.
    pub fn validate(&self) -> Result<()> {
        ensure_positive("ebd.learning_rate", self.learning_rate)?;
        if self.steps == 0 {
            return Err(invalid("ebd.steps", 0, "an integer >= 1"));
        }
        Ok(())
    }
}

/// Adam steps on every column of phi along `grad E_alpha` from `phi0` (n x B). A sample
/// stops when its gradient meets the steady-state test `criterion` (`|grad E|_i <= atol +
/// rtol |phi_i|`) and is then reported converged; otherwise after `adam.steps` steps, as
/// max-steps. Adam acts elementwise, so each sample's path does not depend on the batch.
pub fn adam_on_state<M: EquilibriumSystem>(
    flow: &EnergyDescent<'_, M>,
    phi0: &DMatrix<f64>,
    adam: &StateAdam,
    criterion: &StopCriterion,
) -> BatchSteadyState {
    const BETA1: f64 = 0.9;
    const BETA2: f64 = 0.999;
    const EPS: f64 = 1e-8;
    let (n, b) = phi0.shape();
    let mut phi = phi0.clone();
    let mut m = DMatrix::<f64>::zeros(n, b);
    let mut v = DMatrix::<f64>::zeros(n, b);
    let mut steps = vec![0usize; b];
    let mut done: Vec<Option<(Termination, f64, f64)>> = vec![None; b];
    let mut active: Vec<usize> = (0..b).collect();
    for step in 0..=adam.steps {
        if active.is_empty() {
            break;
        }
        let sub = flow.select_samples(&active);
        let phi_a = phi.select_columns(&active);
        let g = sub.energy_gradient(&phi_a);
        let mut still = Vec::with_capacity(active.len());
        for (k, &j) in active.iter().enumerate() {
            let (abs, scaled) = residual_size(
                phi_a.column(k).as_slice(),
                g.column(k).as_slice(),
                criterion,
            );
            let stop = if diverged(phi_a.column(k).as_slice(), abs, criterion) {
                Some(Termination::Diverged)
            } else if scaled <= 1.0 {
                Some(Termination::Converged)
            } else if step == adam.steps {
                Some(Termination::MaxSteps)
            } else {
                None
            };
            if let Some(t) = stop {
                done[j] = Some((t, abs, scaled));
                continue;
            }
            still.push(j);
            let t = (step + 1) as i32;
            let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
            for i in 0..n {
                let gi = g[(i, k)];
                m[(i, j)] = BETA1 * m[(i, j)] + (1.0 - BETA1) * gi;
                v[(i, j)] = BETA2 * v[(i, j)] + (1.0 - BETA2) * gi * gi;
                let denom = (v[(i, j)] / c2).sqrt() + EPS;
                phi[(i, j)] -= adam.learning_rate * (m[(i, j)] / c1) / denom;
            }
            steps[j] = step + 1;
        }
        active = still;
    }
    let records = (0..b)
        .map(|j| {
            let (termination, residual, scaled_residual) =
                done[j]
                    .clone()
                    .unwrap_or((Termination::MaxSteps, f64::NAN, f64::NAN));
            SteadyState {
                state: phi.columns(j, 1).into_owned(),
                termination,
                residual,
                scaled_residual,
                time: 0.0,
                steps: steps[j],
                rhs_evals: steps[j] + 1,
                jvp_evals: 0,
                solver: SolverMethod::AdamOnState,
                fallback_from: None,
                flow_certified: None,
                trajectory: None,
            }
        })
        .collect();
    BatchSteadyState {
        states: phi,
        records,
    }
}

/// `[ebd]`: energy-based descent (spec 3.4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EbdConfig {
    pub descent: EnergyDescentMethod,
    /// Adam's learning rate on the state (descent = "adam").
    pub learning_rate: f64,
    /// Adam steps (descent = "adam").
    pub steps: usize,
}

impl Default for EbdConfig {
    fn default() -> Self {
        EbdConfig {
            descent: EnergyDescentMethod::Flow,
            learning_rate: 1e-3,
            steps: 200,
        }
    }
}

impl EbdConfig {
    /// Adam's settings.
    pub fn adam(&self) -> StateAdam {
        StateAdam {
            learning_rate: self.learning_rate,
            steps: self.steps,
        }
    }
}
