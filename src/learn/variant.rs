//! The four least-control variants of one batch (spec 3.1-3.4), built in one place for
//! training ([`crate::train`]) and for the alignment study ([`crate::studies::alignment`]): each
//! variant's controlled system, its controlled equilibrium, the control psi* there and the
//! update
//!
//! ```text
//! Delta theta = combine * sum_samples (d_theta f(phi*, theta, x))^T psi*      (DI, KP, EBD)
//! Delta theta_W = combine * sum_samples (s'(v*) * e*) s(v*)^T, ...             (LF, hidden rows)
//! ```
//!
//! (`-grad_theta H_alpha` for LCP-DI and LCP-EBD, whose equilibria are both the minimiser of
//! E_alpha; multiply by a learning rate to apply it).

use crate::control::branch::{branch_equilibrium, BranchSettings, EquilibriumDefinition};
use crate::control::{ControllerSettings, CoupledSystem};
use crate::error::{invalid, Result};
use crate::learn::energy::{adam_on_state, EbdConfig, EnergyDescent, EnergyDescentMethod};
use crate::learn::feedback::{circuit, linear_feedback_update};
use crate::learn::plasticity::{half_squared_norms, least_control_update, update_from_control};
use crate::solve::{solve_batch, BatchSteadyState, SolverSettings, VectorField};
use crate::system::params::Params;
use crate::system::EquilibriumSystem;
use nalgebra::DMatrix;
use serde::{Deserialize, Serialize};

/// The learning method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Least control with dynamic inversion (spec 3.1).
    LcpDi,
    /// Least control with learned Kolen-Pollack feedback weights (spec 3.2).
    LcpKp,
    /// Least control with linear feedback e = Q u, Q learned from noise (spec 3.3).
    LcpLf,
    /// Least control by descent on the relaxed energy (spec 3.4).
    LcpEbd,
    /// Recurrent backprop at the free equilibrium (rnn).
    Rbp,
    /// Backprop (ff; RBP on a layered net is exactly backprop).
    Bp,
    /// Implicit MAML (meta): the implicit meta-gradient by conjugate gradient on
    /// Hessian-vector products, `lambda (H_in + lambda I)^{-1} grad L_out(phi*)`.
    Imaml,
    /// First-order MAML (meta): `grad L_out(phi*)` as the meta-gradient.
    Fomaml,
}

impl Method {
    /// Name as in the config.
    pub fn name(self) -> &'static str {
        match self {
            Method::LcpDi => "lcp-di",
            Method::LcpKp => "lcp-kp",
            Method::LcpLf => "lcp-lf",
            Method::LcpEbd => "lcp-ebd",
            Method::Rbp => "rbp",
            Method::Bp => "bp",
            Method::Imaml => "imaml",
            Method::Fomaml => "fomaml",
        }
    }

    /// True for the least-control methods (they have a controlled equilibrium and H).
    pub fn is_least_control(self) -> bool {
        !matches!(
            self,
            Method::Rbp | Method::Bp | Method::Imaml | Method::Fomaml
        )
    }
}

/// Where the controlled relaxation starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum ControlledStart {
    /// At the free equilibrium phi0 with the controller at rest: the controller switches on
    /// at a network at rest, and the controlled equilibrium continues phi0.
    Free,
    /// At zero (v = y = u_i = e = 0), as the reference code.
    Zero,
}

/// How a variant's controlled equilibrium is sought.
#[derive(Clone, Debug)]
pub struct VariantSettings<'a> {
    /// The least-control variant.
    pub method: Method,
    /// Leak, gains and time constants of the controller.
    pub controller: ControllerSettings,
    /// Where the solve starts (`method.controlled_start`).
    pub start: ControlledStart,
    /// Which controlled equilibrium (`method.equilibrium`, spec 2.2).
    pub equilibrium: EquilibriumDefinition,
    /// The continuation of `equilibrium = branch`.
    pub branch: BranchSettings,
    /// LCP-EBD's descent (`[ebd]`).
    pub ebd: EbdConfig,
    /// The steady-state solver (`[solver]`).
    pub solver: &'a SolverSettings,
}

/// Where a variant's controlled equilibrium lives.
enum Dynamics<'m, S: EquilibriumSystem> {
    /// LCP-DI, -KP, -LF: the network coupled to its controller; states z = (phi, u_i, e).
    Coupled(CoupledSystem<'m, S>),
    /// LCP-EBD: descent on E_alpha; states phi.
    Energy(EnergyDescent<'m, S>),
}

/// One batch's controlled equilibrium under a least-control variant (the flow's or the
/// branch's, [`EquilibriumDefinition`]), with the record of every sample's solve (`solve.states` are the equilibria: z* for the coupled variants,
/// phi* for LCP-EBD).
pub struct ControlledEquilibrium<'m, S: EquilibriumSystem> {
    method: Method,
    dynamics: Dynamics<'m, S>,
    pub solve: BatchSteadyState,
}

impl<'m, S: EquilibriumSystem> ControlledEquilibrium<'m, S> {
    /// Solves for the controlled equilibria of the batch of `free` (the free system) with
    /// free equilibria `phi0` (n x B), as `settings` say, with the learned `feedback` of
    /// LCP-KP / LCP-LF.
    pub fn find(
        settings: &VariantSettings<'_>,
        feedback: Option<&Params>,
        free: &CoupledSystem<'m, S>,
        phi0: &DMatrix<f64>,
    ) -> Result<Self> {
        let (method, controller) = (settings.method, settings.controller);
        let b = free.batch();
        let start_at_free = settings.start == ControlledStart::Free;
        let (dynamics, solve) = match method {
            Method::LcpDi | Method::LcpKp | Method::LcpLf => {
                let controlled = free
                    .with_controller(controller)?
                    .with_feedback(circuit(method, feedback)?)?;
                let solve = match (settings.equilibrium, start_at_free) {
                    (EquilibriumDefinition::Branch, true) => {
                        branch_equilibrium(&controlled, phi0, settings.solver, &settings.branch)?
                    }
                    (EquilibriumDefinition::Branch, false) => {
                        return Err(invalid(
                            "method.controlled_start",
                            "\"zero\" with method.equilibrium = \"branch\"",
                            "\"free\" (the branch starts at phi0 by definition)",
                        ))
                    }
                    (EquilibriumDefinition::Flow, true) => solve_batch(
                        &controlled,
                        &controlled.state_with_phi(phi0)?,
                        settings.solver,
                    ),
                    (EquilibriumDefinition::Flow, false) => {
                        solve_batch(&controlled, &controlled.initial_state(), settings.solver)
                    }
                };
                (Dynamics::Coupled(controlled), solve)
            }
            Method::LcpEbd if settings.equilibrium == EquilibriumDefinition::Branch => {
                return Err(invalid(
                    "method.equilibrium",
                    "\"branch\" with method.name = \"lcp-ebd\"",
                    "\"flow\" for lcp-ebd (its descent has no controller gains to continue in)",
                ))
            }
            Method::LcpEbd => {
                let ebd = &settings.ebd;
                let flow = EnergyDescent::new(free, controller.beta())?;
                let start = if start_at_free {
                    phi0.clone()
                } else {
                    DMatrix::zeros(phi0.nrows(), b)
                };
                let solve = match ebd.descent {
                    EnergyDescentMethod::Flow => solve_batch(&flow, &start, settings.solver),
                    EnergyDescentMethod::Adam => {
                        ebd.adam().validate()?;
                        adam_on_state(&flow, &start, &ebd.adam(), &settings.solver.stop)
                    }
                };
                (Dynamics::Energy(flow), solve)
            }
            Method::Rbp | Method::Bp | Method::Imaml | Method::Fomaml => {
                return Err(invalid(
                    "method.name",
                    method.name(),
                    "a least-control method: \"lcp-di\", \"lcp-kp\", \"lcp-lf\" or \"lcp-ebd\"",
                ))
            }
        };
        Ok(ControlledEquilibrium {
            method,
            dynamics,
            solve,
        })
    }

    /// The variant.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The same equilibria for the samples `columns` only (in that order).
    pub fn select_samples(&self, columns: &[usize]) -> Self {
        let dynamics = match &self.dynamics {
            Dynamics::Coupled(s) => Dynamics::Coupled(s.select_samples(columns)),
            Dynamics::Energy(f) => Dynamics::Energy(f.select_samples(columns)),
        };
        ControlledEquilibrium {
            method: self.method,
            dynamics,
            solve: BatchSteadyState {
                states: self.solve.states.select_columns(columns),
                records: columns
                    .iter()
                    .map(|&j| self.solve.records[j].clone())
                    .collect(),
            },
        }
    }

    /// The network part phi* of the equilibria (n x B).
    pub fn phi(&self) -> DMatrix<f64> {
        match &self.dynamics {
            Dynamics::Coupled(s) => s.phi(&self.solve.states),
            Dynamics::Energy(_) => self.solve.states.clone(),
        }
    }

    /// The control psi* = (e*, u*) at the equilibria (n x B); LCP-EBD reads it off as
    /// `psi* = -f(phi*)`.
    pub fn control(&self) -> DMatrix<f64> {
        match &self.dynamics {
            Dynamics::Coupled(s) => s.control(&self.solve.states),
            Dynamics::Energy(f) => f.control(&self.solve.states),
        }
    }

    /// The control magnitude `H = 1/2 |psi*|^2` of each sample.
    pub fn control_magnitudes(&self) -> Vec<f64> {
        half_squared_norms(&self.control())
    }

    /// The variant's update Delta theta (see the module doc; LCP-LF's hidden rows use the
    /// rate change `s'(v*) * e*`).
    pub fn update(&self) -> Result<Params> {
        Ok(match (&self.dynamics, self.method) {
            (Dynamics::Coupled(s), Method::LcpLf) => linear_feedback_update(s, &self.solve.states)?,
            (Dynamics::Coupled(s), _) => least_control_update(s, &self.solve.states),
            (Dynamics::Energy(f), _) => {
                update_from_control(f.system(), &self.solve.states, &self.control())
            }
        })
    }

    /// LCP-LF: the new Q after the noisy phase from these equilibria (spec 3.3).
    pub fn learn_q(
        &self,
        lf: &crate::learn::feedback::NoisyPhase,
        seed: u64,
    ) -> Result<DMatrix<f64>> {
        match &self.dynamics {
            Dynamics::Coupled(s) => lf.learn_q(s, &self.solve.states, seed),
            Dynamics::Energy(_) => Err(invalid(
                "method.name",
                self.method.name(),
                "\"lcp-lf\" (only linear feedback learns Q)",
            )),
        }
    }
}
