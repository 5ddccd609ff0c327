//! Basin and stability diagnostics of one fixed batch (spec 2.1, 2.2, 5): whether the free
//! equilibrium phi0 exists and is stable, whether the controlled equilibrium phi* is still in
//! phi0's basin, and how well the method's update follows the gradient. Per sample j:
//!
//! ```text
//! free converged     the free solve reached phi0: |f(phi0)|_i <= atol + rtol |phi0_i|
//! spectral abscissa  a_j = max Re lambda( diag(1/tau) df/dphi (phi0_j) )     (< 0: stable)
//! basin switch       the free flow from phi*_j ends at phi1_j with
//!                    |phi1_j - phi0_j|_inf > BASIN_FACTOR * (atol + rtol |phi0_j|_inf)
//! ```
//!
//! and for the batch `cosine(Delta theta, -g)`, g = grad_theta L(phi0) the RBP gradient, on
//! the samples whose solves converged (what `lcsim align` computes, with
//! `method.on_unconverged = "skip"`).
//!
//! **The basin tolerance.** phi0 and phi1 are both steady states to the solver's stop test,
//! `|f(phi)|_i <= eps = atol + rtol |phi|`. Where the free Jacobian J has `|J^-1| <= 1/m`
//! (m: the equilibrium's contraction margin) each lies within eps / m of the true
//! equilibrium, so one equilibrium found twice differs by at most 2 eps / m. [`BASIN_FACTOR`]
//! = 1e3 accepts that for margins m >= 2e-3; distinct attractors of a rate network lie
//! O(0.1) apart in the rates, far beyond the 2e-3 this allows at the default tolerances
//! (atol = rtol = 1e-6). The flow from phi* is followed by an integrator
//! ([`SolverSettings::integrator`]), never by an accelerated solver, which could land on
//! another equilibrium than the flow's.
//!
//! **The spectrum.** For `n <= DENSE_DIM` state components the eigenvalues of the dense
//! Jacobian (assembled from n batched Jacobian actions); beyond, the rightmost Ritz value of
//! [`SPECTRAL_DIM`] Arnoldi steps on the Jacobian action ([`rightmost_ritz_values`]). The dense
//! route is exact; the Arnoldi route reorthogonalises its basis (two Gram-Schmidt passes), without
//! which the rate network's repeated eigenvalue -1/tau (saturated units, the output block)
//! made a long run lose orthogonality and report a spurious eigenvalue near 0.
//!
//! A diagnostic that cannot be computed (a solve that did not converge, an eigenvalue
//! iteration that failed) is NaN for that sample, with the reason; batch values are taken
//! over the samples where they are defined and are NaN when there are none.

use crate::config::{Config, OnUnconverged};
use crate::control::{free_equilibrium, CoupledSystem};
use crate::error::Result;
use crate::io::metrics::EpochDiagnostics;
use crate::learn::plasticity::combine;
use crate::learn::rbp::{gradient_from_adjoints, rbp_gradient};
use crate::learn::variant::ControlledEquilibrium;
use crate::solve::{
    rightmost_ritz_values, solve_batch, spectral_abscissa, BatchSteadyState, SolverSettings,
    SteadyState, VectorField,
};
use crate::system::params::Params;
use crate::system::EquilibriumSystem;
use nalgebra::DMatrix;
use std::collections::BTreeMap;

/// Two free steady states are the same equilibrium when they differ by at most
/// `BASIN_FACTOR * (atol + rtol |phi0|_inf)` (module doc).
pub const BASIN_FACTOR: f64 = 1e3;

/// Free states of at most this dimension get the spectral abscissa from their dense
/// Jacobian's eigenvalues (exact).
pub const DENSE_DIM: usize = 128;

/// Arnoldi steps of the spectral abscissa of larger states (the rightmost eigenvalues are
/// exterior and found first; an estimate, not a bound).
pub const SPECTRAL_DIM: usize = 100;

/// `(cosine(Delta theta, -g), |Delta theta| / (beta |g|))` for an update `Delta theta` and a
/// gradient `g` in the same layout (NaN when either norm is zero: the direction is undefined).
pub fn compare_with_gradient(update: &Params, gradient: &Params, beta: f64) -> (f64, f64) {
    let (nu, ng) = (update.norm(), gradient.norm());
    if nu == 0.0 || ng == 0.0 {
        return (f64::NAN, f64::NAN);
    }
    (-update.dot(gradient) / (nu * ng), nu / (beta * ng))
}

/// A variant's update and the RBP gradient on the same samples: those whose free, adjoint
/// and controlled solves `method.on_unconverged` keeps.
pub struct AlignedUpdate {
    /// Delta theta (None when no sample is kept).
    pub update: Option<Params>,
    /// g over the same samples.
    pub gradient: Option<Params>,
    /// `combine * sum_samples 1/2 |psi*|^2` over them (NaN when none).
    pub h: f64,
    pub samples_used: usize,
}

/// The update of `eq` and the RBP gradient (`gradient`, from the adjoints `adjoints` at the
/// free equilibria `phi0` of `free`) restricted to the samples every solve allows.
pub fn aligned_update<S: EquilibriumSystem>(
    config: &Config,
    free: &CoupledSystem<'_, S>,
    phi0: &DMatrix<f64>,
    free_solve: Option<&BatchSteadyState>,
    gradient: &Params,
    adjoints: &BatchSteadyState,
    eq: &ControlledEquilibrium<'_, S>,
) -> Result<AlignedUpdate> {
    let mut solves: Vec<&BatchSteadyState> = free_solve.into_iter().collect();
    solves.extend([adjoints, &eq.solve]);
    let keep = super::kept_samples(config, &solves)?;
    let (update, gradient, h) = if keep.is_empty() {
        (None, None, f64::NAN)
    } else if keep.len() == free.batch() {
        let h = combine(free, &eq.control_magnitudes());
        (Some(eq.update()?), Some(gradient.clone()), h)
    } else {
        let sub = eq.select_samples(&keep);
        let g = gradient_from_adjoints(
            &free.select_samples(&keep),
            &phi0.select_columns(&keep),
            &adjoints.states.select_columns(&keep),
        );
        (
            Some(sub.update()?),
            Some(g),
            combine(free, &sub.control_magnitudes()),
        )
    };
    Ok(AlignedUpdate {
        update,
        gradient,
        h,
        samples_used: keep.len(),
    })
}

/// The spectral abscissa `max Re lambda(diag(1/tau) J(phi0_j))` of every sample of a free
/// system at its equilibria `phi0` (n x B); NaN where the eigenvalue iteration failed. For
/// `n <= DENSE_DIM` from the dense Jacobian (n batched products with the unit vectors),
/// else the rightmost Ritz value of [`SPECTRAL_DIM`] Arnoldi steps.
pub fn free_spectral_abscissae<F: VectorField>(free: &F, phi0: &DMatrix<f64>) -> Vec<f64> {
    let inverse_tau: Vec<f64> = free.time_constants().iter().map(|t| 1.0 / t).collect();
    let jacobian = free.jacobian_at(phi0);
    let apply = |v: &DMatrix<f64>| {
        let mut w = jacobian(v);
        for (i, s) in inverse_tau.iter().enumerate() {
            w.row_mut(i).scale_mut(*s);
        }
        w
    };
    let (n, b) = (free.dim(), phi0.ncols());
    if n > DENSE_DIM {
        return rightmost_ritz_values(apply, n, b, SPECTRAL_DIM).0;
    }
    // Column k of every sample's Jacobian: the action on e_k in every column.
    let columns: Vec<DMatrix<f64>> = (0..n)
        .map(|k| {
            let mut e = DMatrix::zeros(n, b);
            e.row_mut(k).fill(1.0);
            apply(&e)
        })
        .collect();
    (0..b)
        .map(|j| spectral_abscissa(DMatrix::from_fn(n, n, |i, k| columns[k][(i, j)])))
        .collect()
}

/// The free flow (an integrator: [`SolverSettings::integrator`]) from the controlled
/// equilibria `phi_star` (n x B) of the system `free`, and per sample whether it ended
/// farther than the basin tolerance (module doc) from `phi0`.
pub fn basin_switches<F: VectorField>(
    free: &F,
    phi0: &DMatrix<f64>,
    phi_star: &DMatrix<f64>,
    solver: &SolverSettings,
) -> (Vec<bool>, BatchSteadyState) {
    let back = solve_batch(free, phi_star, &solver.integrator());
    let stop = &solver.stop;
    let switched = (0..phi0.ncols())
        .map(|j| {
            let tol = BASIN_FACTOR * (stop.atol + stop.rtol * phi0.column(j).amax());
            (back.states.column(j) - phi0.column(j)).amax() > tol
        })
        .collect();
    (switched, back)
}

/// [`free_spectral_abscissae`] of the samples `usable` (those whose free solve converged), NaN
/// for the others: length B.
pub fn spectral_abscissae_of<F: VectorField>(
    free: &F,
    phi0: &DMatrix<f64>,
    usable: &[usize],
) -> Vec<f64> {
    let mut a = vec![f64::NAN; phi0.ncols()];
    if !usable.is_empty() {
        let sub =
            free_spectral_abscissae(&free.select_samples(usable), &phi0.select_columns(usable));
        for (&j, v) in usable.iter().zip(sub) {
            a[j] = v;
        }
    }
    a
}

/// [`basin_switches`] of the samples `decidable` (free and controlled solves converged): per
/// sample 1 (switched), 0 (returned to phi0) or NaN, with the reason where the free flow from
/// phi* did not converge (NaN, no reason, for the samples not in `decidable`): length B.
pub fn basin_switches_of<F: VectorField>(
    free: &F,
    phi0: &DMatrix<f64>,
    phi_star: &DMatrix<f64>,
    solver: &SolverSettings,
    decidable: &[usize],
) -> (Vec<f64>, Vec<Option<String>>) {
    let b = phi0.ncols();
    let (mut flags, mut why) = (vec![f64::NAN; b], vec![None; b]);
    if decidable.is_empty() {
        return (flags, why);
    }
    let (switched, back) = basin_switches(
        &free.select_samples(decidable),
        &phi0.select_columns(decidable),
        &phi_star.select_columns(decidable),
        solver,
    );
    for (i, &j) in decidable.iter().enumerate() {
        match unconverged("free flow from phi*", &back.records[i]) {
            Some(w) => why[j] = Some(w),
            None => flags[j] = f64::from(u8::from(switched[i])),
        }
    }
    (flags, why)
}

/// The diagnostics of each sample of one batch.
#[derive(Clone, Debug, Default)]
pub struct SampleDiagnostics {
    /// The free solve converged (always true for an exact free equilibrium).
    pub free_converged: Vec<bool>,
    /// Spectral abscissa of the free Jacobian at phi0 (NaN where undefined).
    pub spectral_abscissa: Vec<f64>,
    /// 1 when the controlled equilibrium left phi0's basin, 0 when it did not, NaN when it
    /// could not be decided or there is no controller.
    pub basin_switch: Vec<f64>,
    /// Why a sample's diagnostics are (partly) undefined.
    pub failure: Vec<Option<String>>,
}

impl SampleDiagnostics {
    /// Records the first failure of sample j.
    fn fail(&mut self, j: usize, why: String) {
        self.failure[j].get_or_insert(why);
    }
}

/// The diagnostics of one batch.
#[derive(Clone, Debug)]
pub struct BatchDiagnostics {
    pub samples: SampleDiagnostics,
    /// `cosine(Delta theta, -g)` (NaN for rbp / bp, or when no sample was usable).
    pub alignment_cosine: f64,
    /// Why the cosine is NaN for a least-control method.
    pub cosine_failure: Option<String>,
}

/// What a solve that did not converge says about a sample.
fn unconverged(stage: &str, r: &SteadyState) -> Option<String> {
    (!r.converged()).then(|| format!("{stage} {}", r.termination.name()))
}

/// The diagnostics of the batch (inputs n_x x B, targets) on `net` with the learned
/// `feedback`, as `config` trains: its loss and scale, method, controller and solver. The
/// cosine is taken over the samples whose free, adjoint and controlled solves all converged
/// (`method.on_unconverged = "skip"` whatever the config says: an update or a gradient away
/// from an equilibrium is not the one the theory speaks of, and a diagnostic never stops
/// training).
pub fn diagnose<S: EquilibriumSystem>(
    config: &Config,
    net: &S,
    feedback: Option<&Params>,
    x: &DMatrix<f64>,
    targets: &DMatrix<f64>,
) -> Result<BatchDiagnostics> {
    let b = x.ncols();
    let objective = config.objective(b);
    let free = CoupledSystem::new(
        net,
        x.clone(),
        targets.clone(),
        objective,
        config.dynamics.tau_v,
        None,
    )?;
    let (phi0, free_solve) = free_equilibrium(&free, &config.solver);
    let mut d = SampleDiagnostics {
        free_converged: vec![true; b],
        spectral_abscissa: vec![f64::NAN; b],
        basin_switch: vec![f64::NAN; b],
        failure: vec![None; b],
    };
    if let Some(s) = &free_solve {
        for (j, r) in s.records.iter().enumerate() {
            d.free_converged[j] = r.converged();
            if let Some(why) = unconverged("free solve", r) {
                d.fail(j, why);
            }
        }
    }
    let stable: Vec<usize> = (0..b).filter(|&j| d.free_converged[j]).collect();
    d.spectral_abscissa = spectral_abscissae_of(&free, &phi0, &stable);
    for &j in &stable {
        if d.spectral_abscissa[j].is_nan() {
            d.fail(j, "eigenvalues of the free Jacobian not found".into());
        }
    }
    let method = config.method.name;
    if !method.is_least_control() {
        return Ok(BatchDiagnostics {
            samples: d,
            alignment_cosine: f64::NAN,
            cosine_failure: None,
        });
    }
    let controller = config.controller_settings();
    let settings = config.variant(method, controller);
    let eq = ControlledEquilibrium::find(&settings, feedback, &free, &phi0)?;
    for (j, r) in eq.solve.records.iter().enumerate() {
        if let Some(why) = unconverged("controlled solve", r) {
            d.fail(j, why);
        }
    }
    let decidable: Vec<usize> = stable
        .iter()
        .copied()
        .filter(|&j| eq.solve.records[j].converged())
        .collect();
    let (flags, why) = basin_switches_of(&free, &phi0, &eq.phi(), &config.solver, &decidable);
    d.basin_switch = flags;
    for (j, w) in why.into_iter().enumerate() {
        if let Some(w) = w {
            d.fail(j, w);
        }
    }
    let mut converged_only = config.clone();
    converged_only.method.on_unconverged = OnUnconverged::Skip;
    let (gradient, adjoints) = rbp_gradient(&free, &phi0, &config.solver);
    let aligned = aligned_update(
        &converged_only,
        &free,
        &phi0,
        free_solve.as_ref(),
        &gradient,
        &adjoints,
        &eq,
    )?;
    let (alignment_cosine, cosine_failure) = match (&aligned.update, &aligned.gradient) {
        (Some(u), Some(g)) => {
            let c = compare_with_gradient(u, g, controller.beta()).0;
            let why = c
                .is_nan()
                .then(|| "the update or the gradient is zero".to_string());
            (c, why)
        }
        _ => (
            f64::NAN,
            Some("no sample with usable free, adjoint and controlled solves".to_string()),
        ),
    };
    Ok(BatchDiagnostics {
        samples: d,
        alignment_cosine,
        cosine_failure,
    })
}

impl BatchDiagnostics {
    /// The epoch's summary: fractions over the samples where each is defined, the largest
    /// spectral abscissa, the failed samples and their reasons by count.
    pub fn summary(&self) -> EpochDiagnostics {
        let d = &self.samples;
        let b = d.free_converged.len();
        let decided: Vec<f64> = d
            .basin_switch
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .collect();
        let fraction = |n: f64, of: usize| if of == 0 { f64::NAN } else { n / of as f64 };
        let abscissa = d
            .spectral_abscissa
            .iter()
            .copied()
            .filter(|v| !v.is_nan())
            .reduce(f64::max)
            .unwrap_or(f64::NAN);
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for why in d.failure.iter().flatten() {
            *reasons.entry(why.as_str()).or_default() += 1;
        }
        let mut failure: Vec<String> = reasons
            .iter()
            .map(|(why, n)| format!("{why}: {n}"))
            .collect();
        failure.extend(self.cosine_failure.iter().map(|w| format!("cosine: {w}")));
        EpochDiagnostics {
            fraction_basin_switch: fraction(decided.iter().sum(), decided.len()),
            fraction_free_converged: fraction(
                d.free_converged.iter().filter(|&&c| c).count() as f64,
                b,
            ),
            free_spectral_abscissa: abscissa,
            alignment_cosine: self.alignment_cosine,
            diagnostics_failed: d.failure.iter().filter(|f| f.is_some()).count(),
            failure: failure.join(", "),
        }
    }
}
