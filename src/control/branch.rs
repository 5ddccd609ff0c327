//! Which controlled equilibrium (spec 2.2): the *flow* equilibrium, where the coupled ODE
//! settles when the controller switches on at phi0, or the *branch* equilibrium, the one
//! continuously connected to phi0 as the control strength grows from zero.
//!
//! The branch is followed by natural-parameter continuation in the control strength
//! `lambda` in [0, 1], which scales the controller's gains (`k_i -> lambda k_i`,
//! `k_p -> lambda k_p`, so `beta -> lambda beta`; [`CoupledSystem::with_control_strength`]):
//!
//! ```text
//! lambda = 0:   z(0) = (phi0, u_i = -grad_R L(phi0) / alpha, e = 0)     (u = 0: exact)
//! predictor:    z~ = z(l) + (l' - l) (z(l) - z(l_prev)) / (l - l_prev)   (secant; z(l) first)
//! corrector:    r_l'(z) = 0 by Newton-Krylov from z~, at most `corrector_iterations` steps,
//!               accepted when converged, stable (rightmost Ritz value of diag(1/tau) dr/dz
//!               <= 0, the solver's stability check) and |z - z~|_i <= max_correction (1 + |z~_i|)
//! step control: h doubles after a corrector of <= 3 Newton steps, halves on a rejection;
//!               a rejection at h = min_step is a fold at l (reported, never jumped)
//! ```
//!
//! Each sample follows its own branch with its own steps (in parallel; the result does not
//! depend on the other samples or the thread count). The solver sees only the field at one
//! strength: it stays unaware of the continuation.

use super::CoupledSystem;
use crate::error::{ensure_positive, invalid, Result};
use crate::solve::{
    residual_size, solve_batch, BatchSteadyState, Fallback, SolverMethod, SolverSettings,
    SteadyState, Termination,
};
use crate::system::EquilibriumSystem;
use nalgebra::DMatrix;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The definition of the controlled equilibrium (`method.equilibrium`, spec 2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum EquilibriumDefinition {
    /// Where the coupled ODE settles when the controller switches on (at
    /// `method.controlled_start`): what a physical circuit does.
    #[default]
    Flow,
    /// The equilibrium continuously connected to phi0 as the control strength grows from 0.
    Branch,
}

impl EquilibriumDefinition {
    /// Name as in the config.
    pub fn name(self) -> &'static str {
        match self {
            EquilibriumDefinition::Flow => "flow",
            EquilibriumDefinition::Branch => "branch",
        }
    }
}

/// Step control of the continuation (see the module doc).
#[derive(Clone, Debug, PartialEq)]
pub struct BranchSettings {
    /// First step in lambda, in (0, 1].
    pub initial_step: f64,
    /// Smallest step, in (0, initial_step]: a rejected corrector at this step is a fold.
    pub min_step: f64,
    /// Newton steps per corrector (>= 1).
    pub corrector_iterations: usize,
    /// Largest accepted correction, relative per entry: `|z - z~|_i <= c (1 + |z~_i|)` (> 0).
    pub max_correction: f64,
}

impl Default for BranchSettings {
    fn default() -> Self {
        BranchSettings {
            initial_step: 0.125,
            min_step: 1.0 / 1024.0,
            corrector_iterations: 8,
            max_correction: 0.25,
        }
    }
}

impl BranchSettings {
    /// Checks every field (names as in the config's `[method]`).
    pub fn validate(&self) -> Result<()> {
        let h0 = self.initial_step;
        if !(h0 > 0.0 && h0 <= 1.0) {
            return Err(invalid(
                "method.branch_initial_step",
                h0,
                "a number in (0, 1]",
            ));
        }
        let hmin = self.min_step;
        if !(hmin > 0.0 && hmin <= h0) {
            return Err(invalid(
                "method.branch_min_step",
                hmin,
                "a number in (0, method.branch_initial_step]",
            ));
        }
        if self.corrector_iterations == 0 {
            return Err(invalid(
                "method.branch_corrector_iterations",
                0,
                "an integer >= 1",
            ));
        }
        ensure_positive("method.branch_max_correction", self.max_correction)
    }
}

/// The start of the branch at lambda = 0 (dim x B): phi0, the integral controller at its
/// equilibrium `u_i = -scale grad_R L(phi0) / alpha` (so u = 0) and e = 0.
pub fn branch_start<S: EquilibriumSystem>(
    controlled: &CoupledSystem<'_, S>,
    phi0: &DMatrix<f64>,
) -> Result<DMatrix<f64>> {
    let Some(c) = controlled.controller() else {
        return Err(invalid(
            "controller",
            "none",
            "a controlled system (the branch grows its control from zero)",
        ));
    };
    let mut z = controlled.state_with_phi(phi0)?;
    let u_i = controlled.loss_gradient(phi0) / (-c.alpha);
    z.rows_range_mut(controlled.integral_rows()).copy_from(&u_i);
    Ok(z)
}

/// The branch equilibria of every sample of `controlled` from its free equilibria `phi0`
/// (n x B): one record per sample, `Converged` at lambda = 1 or [`Termination::Fold`] with
/// the last point of the branch. The corrector is `solver`'s Newton-Krylov (its stopping
/// criterion, GMRES and stability check; no fallback).
pub fn branch_equilibrium<S: EquilibriumSystem>(
    controlled: &CoupledSystem<'_, S>,
    phi0: &DMatrix<f64>,
    solver: &SolverSettings,
    branch: &BranchSettings,
) -> Result<BatchSteadyState> {
    branch.validate()?;
    let z0 = branch_start(controlled, phi0)?;
    let mut corrector = solver.with_method(SolverMethod::NewtonKrylov);
    corrector.accelerated.max_iterations = branch.corrector_iterations;
    corrector.accelerated.fallback = Fallback::None;
    corrector.accelerated.certify.enabled = false;
    let records = (0..controlled.batch())
        .into_par_iter()
        .map(|j| {
            let z = z0.columns(j, 1).into_owned();
            follow(&controlled.sample(j), z, &corrector, branch)
        })
        .collect::<Result<Vec<SteadyState>>>()?;
    let columns: Vec<_> = records.iter().map(|r| r.state.column(0)).collect();
    Ok(BatchSteadyState {
        states: DMatrix::from_columns(&columns),
        records,
    })
}

/// Newton steps of a corrector after which the next step doubles.
const EASY_CORRECTOR: usize = 3;

/// Follows one sample's branch from `z` at lambda = 0 to lambda = 1 (module doc).
fn follow<S: EquilibriumSystem>(
    sample: &CoupledSystem<'_, S>,
    mut z: DMatrix<f64>,
    corrector: &SolverSettings,
    branch: &BranchSettings,
) -> Result<SteadyState> {
    let (mut lambda, mut h) = (0.0f64, branch.initial_step);
    let mut previous: Option<(f64, DMatrix<f64>)> = None;
    let (mut steps, mut rhs_evals, mut jvp_evals) = (0usize, 0usize, 0usize);
    loop {
        let next = (lambda + h).min(1.0);
        let predicted = match &previous {
            Some((l_prev, z_prev)) => &z + (&z - z_prev) * ((next - lambda) / (lambda - l_prev)),
            None => z.clone(),
        };
        let field = sample.with_control_strength(next)?;
        let mut rec = solve_batch(&field, &predicted, corrector).records.remove(0);
        steps += rec.steps;
        rhs_evals += rec.rhs_evals;
        jvp_evals += rec.jvp_evals;
        let close = rec
            .state
            .iter()
            .zip(predicted.iter())
            .all(|(a, p)| (a - p).abs() <= branch.max_correction * (1.0 + p.abs()));
        if rec.converged() && close {
            if next >= 1.0 {
                rec.steps = steps;
                rec.rhs_evals = rhs_evals;
                rec.jvp_evals = jvp_evals;
                return Ok(rec);
            }
            if rec.steps <= EASY_CORRECTOR {
                h = (2.0 * h).min(1.0);
            }
            let accepted = std::mem::replace(&mut z, rec.state);
            previous = Some((lambda, accepted));
            lambda = next;
        } else if h <= branch.min_step {
            let r = sample.residual(&z);
            let (residual, scaled_residual) =
                residual_size(z.as_slice(), r.as_slice(), &corrector.stop);
            return Ok(SteadyState {
                state: z,
                termination: Termination::Fold { lambda },
                residual,
                scaled_residual,
                time: 0.0,
                steps,
                rhs_evals: rhs_evals + 1,
                jvp_evals,
                solver: SolverMethod::NewtonKrylov,
                fallback_from: None,
                flow_certified: None,
                trajectory: None,
            });
        } else {
            h = (0.5 * h).max(branch.min_step);
        }
    }
}
