//! One batch of saved parameters and data (`lcsim equilibrium`): the free (and controlled)
//! equilibria, LCP-DI updates and RBP gradients as named arrays, the layout of R.npz.
//!
//! ```text
//! free_v, free_y (B, n)   free equilibrium        free_loss (B,)   L(phi0) per sample
//! rbp_<P>                  RBP gradient            adjoint_*        adjoint solver records
//! v, y, u_i, u, e (B, n)   controlled equilibrium  H (B,)           1/2 |psi*|^2 per sample
//! lcp_<P>                  LCP-DI update           <stage>_converged, _residual, _time, _steps,
//!                                                  _rhs_evals, _jvp_evals, _fallback
//! free_spectral_abscissa (B,)  max Re lambda(diag(1/tau) df/dphi (phi0)) (< 0: stable; NaN
//!                              where the free solve did not converge)
//! basin_switch (B,)        1 when the free flow from phi* does not return to phi0, 0 when
//!                          it does, NaN when undecided (a solve did not converge; lcp-di only)
//! ```
//!
//! (`free_converged` is the free-state converged flag.) The diagnostics are those of
//! training's epochs ([`crate::train::diagnostics`]: the basin tolerance, the integrator that
//! follows the flow from phi*); every solver of the config may relax the batch, the
//! accelerated ones (`anderson`, `newton-krylov`) with their default settings.

use crate::control::branch::{branch_equilibrium, BranchSettings, EquilibriumDefinition};
use crate::control::relax;
use crate::control::LossScale;
use crate::control::{ControllerSettings, CoupledSystem, Objective};
use crate::error::{invalid, LcsimError, Result};
use crate::io::interop::{load_inputs, load_params, load_targets, npy_from_matrix};
use crate::io::npz::{write_npz, NpyArray};
use crate::learn::plasticity::{control_magnitude, least_control_update};
use crate::learn::rbp::rbp_gradient;
use crate::numerics::activation::Activation;
use crate::solve::{solve_batch, BatchSteadyState, SolverSettings, SteadyState, Termination};
use crate::studies::progress;
use crate::system::loss::Loss;
use crate::system::params::Params;
use crate::system::rate::RateNetwork;
use crate::train::diagnostics::{basin_switches_of, spectral_abscissae_of};
use nalgebra::DMatrix;
use std::path::{Path, PathBuf};

/// What [`equilibrium_arrays`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum BatchMethod {
    /// Free and LCP-DI controlled equilibria, LCP updates and RBP gradients.
    LcpDi,
    /// The free equilibrium only.
    Free,
    /// The free equilibrium and the RBP gradient.
    Rbp,
}

/// How the batch is relaxed.
#[derive(Clone, Debug)]
pub struct BatchSettings {
    pub method: BatchMethod,
    pub objective: Objective,
    pub tau_v: f64,
    pub controller: ControllerSettings,
    pub solver: SolverSettings,
    /// Which controlled equilibrium (spec 2.2; the branch with the default step control).
    pub equilibrium: EquilibriumDefinition,
}

/// `lcsim equilibrium`: the files of one batch and how to relax it.
#[derive(Clone, Debug)]
pub struct EquilibriumJob {
    /// Parameters (.npz with W, b, E, c, D, d).
    pub params: PathBuf,
    /// Inputs (.npy, (B, n_x)).
    pub input: PathBuf,
    /// Labels (.npy, (B,) classes or (B, n_y) targets).
    pub labels: PathBuf,
    /// The R.npz to write (its folder must exist).
    pub out: PathBuf,
    /// The parameter file holds a layered net's blocks.
    pub layered: bool,
    pub activation: Activation,
    pub method: BatchMethod,
    pub loss: Loss,
    pub loss_scale: LossScale,
    pub tau_v: f64,
    pub controller: ControllerSettings,
    pub solver: SolverSettings,
    /// Which controlled equilibrium (spec 2.2).
    pub equilibrium: EquilibriumDefinition,
}

impl EquilibriumJob {
    /// Refuses an --out that names one of the input files (it would be overwritten).
    pub fn check_out(&self) -> Result<()> {
        let same =
            |a: &std::path::Path, b: &std::path::Path| match (a.canonicalize(), b.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => a == b,
            };
        for (flag, input) in [
            ("--params", &self.params),
            ("--input", &self.input),
            ("--labels", &self.labels),
        ] {
            if same(&self.out, input) {
                return Err(invalid(
                    "--out",
                    self.out.display(),
                    &format!(
                        "a file other than the inputs (it is {flag}, which would be overwritten)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Loads the job's files, checks that they fit together and computes the batch's arrays
/// (written by [`write_batch_study`] to `job.out`).
pub fn equilibrium_study(job: &EquilibriumJob) -> Result<BatchStudy> {
    job.check_out()?;
    let net = load_params(&job.params, job.layered, job.activation)?;
    let x = load_inputs(&job.input)?;
    let t = load_targets(&job.labels, net.n_y())?;
    if x.nrows() != net.n_x() || t.ncols() != x.ncols() {
        return Err(LcsimError::Shape {
            field: "--input / --labels".into(),
            expected: format!("inputs (B, {}) and labels for the same B", net.n_x()),
            found: format!(
                "inputs (B = {}, {}) and {} labels",
                x.ncols(),
                x.nrows(),
                t.ncols()
            ),
        });
    }
    if let Some(parent) = job.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if !parent.is_dir() {
            return Err(invalid(
                "--out",
                job.out.display(),
                "a path in an existing directory",
            ));
        }
    }
    let settings = BatchSettings {
        method: job.method,
        objective: Objective::new(job.loss, job.loss_scale, x.ncols()),
        tau_v: job.tau_v,
        controller: job.controller,
        solver: job.solver.clone(),
        equilibrium: job.equilibrium,
    };
    equilibrium_arrays(&net, &x, &t, &settings)
}

/// The named arrays of one batch and a summary of each solve.
#[derive(Clone, Debug)]
pub struct BatchStudy {
    /// In the order they are written.
    pub arrays: Vec<(String, NpyArray)>,
    /// Each solve by stage: "free", "adjoint (RBP)", "controlled (LCP-DI)".
    pub solves: Vec<(String, SolveSummary)>,
    /// Mean of H = 1/2 |psi*|^2 over the batch (LCP-DI only).
    pub mean_h: Option<f64>,
    pub diagnostics: BatchDiagnosticsSummary,
}

/// The stability and basin diagnostics of the batch, summed up.
#[derive(Clone, Debug)]
pub struct BatchDiagnosticsSummary {
    pub samples: usize,
    /// Free solves that converged.
    pub free_converged: usize,
    /// Largest spectral abscissa over them (None: no free solve converged).
    pub max_spectral_abscissa: Option<f64>,
    /// LCP-DI: (basin switches, samples where it was decided).
    pub basin_switches: Option<(usize, usize)>,
}

/// How the samples of one batched solve ended.
#[derive(Clone, Debug)]
pub struct SolveSummary {
    pub samples: usize,
    /// Samples per termination name.
    pub terminations: std::collections::BTreeMap<&'static str, usize>,
    pub max_residual: f64,
    pub mean_steps: f64,
    /// Samples produced by the fallback integrator.
    pub fallbacks: usize,
}

impl SolveSummary {
    pub fn of(b: &BatchSteadyState) -> Self {
        let mut terminations = std::collections::BTreeMap::new();
        for r in &b.records {
            *terminations.entry(r.termination.name()).or_insert(0usize) += 1;
        }
        SolveSummary {
            samples: b.records.len(),
            terminations,
            max_residual: b.max_residual(),
            mean_steps: b.mean_steps(),
            fallbacks: b
                .records
                .iter()
                .filter(|r| r.fallback_from.is_some())
                .count(),
        }
    }
}

/// The arrays of one batch (inputs n_x x B, targets n_y x B) on `net` (see the module doc).
pub fn equilibrium_arrays(
    net: &RateNetwork,
    x: &DMatrix<f64>,
    t: &DMatrix<f64>,
    s: &BatchSettings,
) -> Result<BatchStudy> {
    let opts = &s.solver;
    let free = CoupledSystem::new(
        net,
        x.clone(),
        t.clone(),
        s.objective.clone(),
        s.tau_v,
        None,
    )?;
    let mut out: Vec<(String, NpyArray)> = Vec::new();
    let mut solves = Vec::new();
    let mut mean_h = None;
    let n_h = net.n_h();
    let stages = match s.method {
        BatchMethod::Free => 1,
        BatchMethod::Rbp => 2,
        BatchMethod::LcpDi => 3,
    };
    progress::report("equilibrium: free solve", 0, stages);
    let free_solve = relax(&free, opts);
    let phi0 = free.phi(&free_solve.states);
    push_rows(&mut out, "free_v", &phi0.rows(0, n_h).into_owned());
    push_rows(&mut out, "free_y", &phi0.rows(n_h, net.n_y()).into_owned());
    push_records(&mut out, "free", &free_solve);
    out.push(("free_loss".into(), vector(&free.losses(&phi0))));
    solves.push(("free".to_string(), SolveSummary::of(&free_solve)));
    let free_converged = converged_samples(&free_solve);
    let abscissa = spectral_abscissae_of(&free, &phi0, &free_converged);
    out.push(("free_spectral_abscissa".into(), vector(&abscissa)));
    let mut diagnostics = BatchDiagnosticsSummary {
        free_converged: free_converged.len(),
        samples: x.ncols(),
        max_spectral_abscissa: abscissa
            .iter()
            .copied()
            .filter(|a| !a.is_nan())
            .reduce(f64::max),
        basin_switches: None,
    };

    if s.method != BatchMethod::Free {
        progress::report("equilibrium: adjoint solve (RBP)", 1, stages);
        let (grad, adjoints) = rbp_gradient(&free, &phi0, opts);
        push_params(&mut out, "rbp_", net, &grad);
        push_records(&mut out, "adjoint", &adjoints);
        solves.push(("adjoint (RBP)".to_string(), SolveSummary::of(&adjoints)));
    }
    if s.method == BatchMethod::LcpDi {
        progress::report("equilibrium: controlled solve (LCP-DI)", 2, stages);
        let controlled = CoupledSystem::new(
            net,
            x.clone(),
            t.clone(),
            s.objective.clone(),
            s.tau_v,
            Some(s.controller),
        )?;
        let solve = match s.equilibrium {
            EquilibriumDefinition::Flow => {
                solve_batch(&controlled, &controlled.state_with_phi(&phi0)?, opts)
            }
            EquilibriumDefinition::Branch => {
                branch_equilibrium(&controlled, &phi0, opts, &BranchSettings::default())?
            }
        };
        let z = &solve.states;
        let psi = controlled.control(z);
        let rows = |r: std::ops::Range<usize>| z.rows_range(r).into_owned();
        push_rows(&mut out, "v", &rows(0..n_h));
        push_rows(&mut out, "y", &rows(controlled.loss_rows()));
        push_rows(&mut out, "u_i", &rows(controlled.integral_rows()));
        push_rows(
            &mut out,
            "u",
            &psi.rows_range(controlled.loss_rows()).into_owned(),
        );
        push_rows(&mut out, "e", &rows(controlled.control_rows()));
        push_records(&mut out, "controlled", &solve);
        let controlled_converged = converged_samples(&solve);
        let decidable: Vec<usize> = free_converged
            .iter()
            .copied()
            .filter(|j| controlled_converged.contains(j))
            .collect();
        let (switch, _) = basin_switches_of(&free, &phi0, &controlled.phi(z), opts, &decidable);
        let decided: Vec<f64> = switch.iter().copied().filter(|s| !s.is_nan()).collect();
        diagnostics.basin_switches = Some((decided.iter().sum::<f64>() as usize, decided.len()));
        out.push(("basin_switch".into(), vector(&switch)));
        let h = control_magnitude(&controlled, z);
        out.push(("H".into(), vector(&h)));
        push_params(&mut out, "lcp_", net, &least_control_update(&controlled, z));
        solves.push(("controlled (LCP-DI)".to_string(), SolveSummary::of(&solve)));
        mean_h = Some(h.iter().sum::<f64>() / h.len() as f64);
    }
    Ok(BatchStudy {
        arrays: out,
        solves,
        mean_h,
        diagnostics,
    })
}

/// The samples whose solve converged.
fn converged_samples(b: &BatchSteadyState) -> Vec<usize> {
    (0..b.records.len())
        .filter(|&j| b.records[j].converged())
        .collect()
}

/// Writes the arrays to one .npz file, atomically.
pub fn write_batch_study(path: &Path, study: &BatchStudy) -> Result<()> {
    let refs: Vec<(&str, &NpyArray)> = study.arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    Ok(write_npz(path, &refs)?)
}

/// Stores an n x B state block as (B, n): one sample per row.
fn push_rows(out: &mut Vec<(String, NpyArray)>, name: &str, m: &DMatrix<f64>) {
    out.push((name.into(), npy_from_matrix(&m.transpose(), false)));
}

fn vector(values: &[f64]) -> NpyArray {
    NpyArray {
        shape: vec![values.len()],
        data: values.to_vec(),
    }
}

fn push_params(out: &mut Vec<(String, NpyArray)>, prefix: &str, net: &RateNetwork, p: &Params) {
    for (n, m) in net.named_arrays_of(p) {
        out.push((format!("{prefix}{n}"), npy_from_matrix(&m, true)));
    }
}

/// Per-sample solver records: converged (0/1), residual, time, steps, RHS and JVP
/// evaluations, and fallback (1 when the fallback integrator produced the state).
fn push_records(out: &mut Vec<(String, NpyArray)>, prefix: &str, b: &BatchSteadyState) {
    let col =
        |f: &dyn Fn(&SteadyState) -> f64| vector(&b.records.iter().map(f).collect::<Vec<_>>());
    out.push((
        format!("{prefix}_converged"),
        col(&|r| r.converged() as u8 as f64),
    ));
    out.push((format!("{prefix}_residual"), col(&|r| r.residual)));
    out.push((format!("{prefix}_time"), col(&|r| r.time)));
    out.push((format!("{prefix}_steps"), col(&|r| r.steps as f64)));
    out.push((format!("{prefix}_rhs_evals"), col(&|r| r.rhs_evals as f64)));
    out.push((format!("{prefix}_jvp_evals"), col(&|r| r.jvp_evals as f64)));
    out.push((
        format!("{prefix}_fallback"),
        col(&|r| r.fallback_from.is_some() as u8 as f64),
    ));
    // The branch's fold: the control strength lambda it stopped at (NaN: no fold).
    out.push((
        format!("{prefix}_fold_lambda"),
        col(&|r| match r.termination {
            Termination::Fold { lambda } => lambda,
            _ => f64::NAN,
        }),
    ));
    // The flow certificate: 1 certified, 0 rejected (the state is then the fallback's),
    // NaN not checked.
    out.push((
        format!("{prefix}_flow_certified"),
        col(&|r| r.flow_certified.map_or(f64::NAN, |c| c as u8 as f64)),
    ));
}

/// One line per solve and the mean H, as `lcsim equilibrium` prints them.
impl std::fmt::Display for BatchStudy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (what, s) in &self.solves {
            writeln!(
                f,
                "{what}: {} samples, {:?}, max residual {:.3e}, mean steps {:.1}, {} by the fallback integrator",
                s.samples, s.terminations, s.max_residual, s.mean_steps, s.fallbacks
            )?;
        }
        if let Some(h) = self.mean_h {
            writeln!(f, "  mean H = 1/2 |psi*|^2: {h:.6e}")?;
        }
        let d = &self.diagnostics;
        let abscissa = d
            .max_spectral_abscissa
            .map_or("NaN (no free solve converged)".to_string(), |a| {
                format!("{a:.4e}")
            });
        writeln!(
            f,
            "diagnostics: free converged {}/{}, max spectral abscissa of the free Jacobian {abscissa}",
            d.free_converged, d.samples
        )?;
        if let Some((switched, decided)) = d.basin_switches {
            writeln!(
                f,
                "  basin switches {switched}/{decided} decided ({} undecided: a solve did not converge)",
                d.samples - decided
            )?;
        }
        Ok(())
    }
}
