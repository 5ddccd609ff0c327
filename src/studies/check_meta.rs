//! The checks of spec 6 on the meta-learning system of spec 7.1 (`lcsim check --system meta`):
//! a random learner (a small tanh MLP, initialisation theta) and a few sinusoid regression
//! tasks (K support and Q query points each), all from one seed. Measured:
//!
//! - the LCP meta-update `lambda sum_tasks psi*` against central finite differences of
//!   `H_alpha(theta) = min_phi E_alpha(phi; theta)` at the controller's alpha (spec 6.3);
//! - the implicit meta-gradient by conjugate gradient ([`implicit_meta_gradient`]) against
//!   central finite differences of `L_out(phi*(theta))` (spec 6.4's RBP check);
//! - the cosine between the LCP update and the negative implicit gradient per alpha, which
//!   tends to 1 as the control weakens (spec 6.4).
//!
//! Every equilibrium is found by Newton-Krylov with GMRES spanning the whole controlled state
//! of one task, each task solved on its own (`solver.chunk = 1`: the accelerated solvers
//! iterate a chunk jointly, and a Krylov space smaller than the chunk's state can stall), then
//! refined by Newton's method with the dense Jacobian. The controlled equilibrium is the
//! branch one (spec 2.2; [`meta_controlled_equilibrium`]). The finite-difference probes refine
//! the unperturbed equilibrium of the perturbed system the same way. The helpers are public
//! so that `tests/meta_system.rs` builds its systems the same way.

use crate::control::branch::{branch_equilibrium, BranchSettings};
use crate::control::{free_equilibrium, ControllerSettings, CoupledSystem, LossScale, Objective};
use crate::error::{ensure_positive, invalid, Result};
use crate::learn::meta_gradient::{implicit_meta_gradient, CgReport};
use crate::learn::plasticity::{combine, least_control_update, relaxed_energy};
use crate::numerics::rng::Rng;
use crate::solve::{BatchSteadyState, SolverMethod, SolverSettings, Termination};
use crate::studies::alignment::compare_with_gradient;
use crate::studies::check::verdict;
use crate::studies::check::{finite_difference_gradient, refine, relative_errors};
use crate::studies::progress;
use crate::system::learner::Mlp;
use crate::system::meta::{pack_points, MetaSystem, QueryLoss};
use crate::system::params::Params;
use crate::system::EquilibriumSystem;
use nalgebra::DMatrix;
use serde::Serialize;
use std::sync::Arc;

/// The alphas of the alignment check by default. Not 0.01 as for the rate network: there the
/// branch of the default tasks folds (the control cannot fit the query sets).
pub const DEFAULT_META_ALPHAS: [f64; 5] = [1e-1, 1.0, 1e1, 1e2, 1e3];

/// What to check and on which random learner and tasks.
#[derive(Clone, Debug)]
pub struct MetaCheckSettings {
    /// Layer sizes of the learner MLP (input and output 1: sinusoids of a scalar).
    pub learner: Vec<usize>,
    /// Tasks in the batch (one column each).
    pub tasks: usize,
    /// Support points K per task (the inner problem's data).
    pub support: usize,
    /// Query points Q per task (the outer loss's data).
    pub query: usize,
    /// Pull lambda of the inner problem towards theta.
    pub lambda: f64,
    /// Seed of theta and the tasks.
    pub seed: u64,
    /// Time constant of phi.
    pub tau: f64,
    /// Controller of the finite-difference check (its alpha is used there).
    pub controller: ControllerSettings,
    /// Alphas of the alignment check, increasing.
    pub alphas: Vec<f64>,
    /// Central finite-difference step (relative to max(|theta_k|, 1)).
    pub fd_step: f64,
    /// Largest accepted relative error of the finite-difference checks.
    pub fd_tolerance: f64,
    /// Smallest accepted cosine at the largest alpha.
    pub cosine_tolerance: f64,
    /// Relative residual at which CG stops.
    pub cg_tolerance: f64,
    /// CG iteration cap per task.
    pub cg_max_iterations: usize,
    /// Steady-state tolerance (atol = rtol) of the Newton-Krylov solves before refinement.
    pub solver_tolerance: f64,
}

impl Default for MetaCheckSettings {
    fn default() -> Self {
        MetaCheckSettings {
            learner: vec![1, 5, 4, 1],
            tasks: 2,
            support: 4,
            query: 6,
            lambda: 2.0,
            seed: 0,
            tau: 1.0,
            controller: ControllerSettings::default(),
            alphas: DEFAULT_META_ALPHAS.to_vec(),
            fd_step: 1e-5,
            fd_tolerance: 1e-6,
            cosine_tolerance: 0.999,
            cg_tolerance: 1e-12,
            cg_max_iterations: 1000,
            solver_tolerance: 1e-10,
        }
    }
}

impl MetaCheckSettings {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.learner.len() < 2
            || self.learner.contains(&0)
            || self.learner[0] != 1
            || self.learner.last() != Some(&1)
        {
            return Err(invalid(
                "learner sizes",
                format!("{:?}", self.learner),
                "layer sizes > 0 with input and output 1, e.g. 1,5,4,1",
            ));
        }
        for (field, v) in [
            ("tasks", self.tasks),
            ("support", self.support),
            ("query", self.query),
            ("cg_max_iterations", self.cg_max_iterations),
        ] {
            if v == 0 {
                return Err(invalid(field, 0, "an integer >= 1"));
            }
        }
        crate::studies::alignment::validate_alphas("alphas", &self.alphas)?;
        ensure_positive("meta.lambda", self.lambda)?;
        ensure_positive("tau", self.tau)?;
        ensure_positive("fd_step", self.fd_step)?;
        ensure_positive("fd_tolerance", self.fd_tolerance)?;
        ensure_positive("cg_tolerance", self.cg_tolerance)?;
        ensure_positive("solver_tolerance", self.solver_tolerance)?;
        self.controller.validate()
    }
}

/// Uniform entries in `[-scale, scale)`.
pub fn random_matrix(rows: usize, cols: usize, scale: f64, rng: &mut Rng) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |_, _| rng.uniform_range(-scale, scale))
}

/// The inner problem of the learner `sizes` with pull `lambda` on tasks of `support` points,
/// with theta uniform in [-0.6, 0.6) from `seed`.
pub fn random_meta_system(
    sizes: &[usize],
    lambda: f64,
    support: usize,
    seed: u64,
) -> Result<MetaSystem> {
    let mlp = Mlp::new(sizes.to_vec())?;
    let mut rng = Rng::seed_from_u64(seed);
    let theta = random_matrix(mlp.num_params(), 1, 0.6, &mut rng);
    MetaSystem::new(mlp, lambda, support, theta)
}

/// `tasks` sinusoid regression tasks `y = a sin(x + p)` (a in [0.5, 2), p in [0, 3), x in
/// [-2, 2)) from `seed`: support sets (columns of K points) and query sets (Q points), packed
/// as [`pack_points`] does. The learner's input and output dimensions must be equal.
pub fn sinusoid_tasks(
    mlp: &Mlp,
    tasks: usize,
    support: usize,
    query: usize,
    seed: u64,
) -> (DMatrix<f64>, DMatrix<f64>) {
    let mut rng = Rng::seed_from_u64(seed);
    let d = mlp.input_dim() + mlp.output_dim();
    let mut xs = DMatrix::zeros(d * support, tasks);
    let mut xq = DMatrix::zeros(d * query, tasks);
    for j in 0..tasks {
        let (amp, phase) = (rng.uniform_range(0.5, 2.0), rng.uniform_range(0.0, 3.0));
        let draw = |p: usize, rng: &mut Rng| {
            let x = random_matrix(mlp.input_dim(), p, 2.0, rng);
            let y = x.map(|v| amp * (v + phase).sin());
            pack_points(&x, &y)
        };
        xs.set_column(j, &draw(support, &mut rng));
        xq.set_column(j, &draw(query, &mut rng));
    }
    (xs, xq)
}

/// Newton-Krylov to `|r_i| <= tol (1 + |z_i|)` for the inner problem of `state_dim`
/// parameters: GMRES spans a task's whole controlled state (3 n), so each Newton step is
/// exact, and every task is solved on its own (chunk 1; a joint solve of several tasks would
/// need a Krylov space of 3 n per task and stalls with less).
pub fn meta_newton(tol: f64, state_dim: usize) -> SolverSettings {
    let mut o = SolverSettings {
        method: SolverMethod::NewtonKrylov,
        ..SolverSettings::default()
    };
    o.stop.atol = tol;
    o.stop.rtol = tol;
    o.stop.max_steps = 200_000;
    o.stop.max_time = 1e5;
    o.newton_krylov.krylov_dim = 3 * state_dim + 3;
    o.newton_krylov.forcing = 1e-8;
    o.accelerated.chunk = 1;
    o
}

/// The system of `sys` on support sets `xs` and query sets `xq` (the query MSE, batch mean),
/// free (`controller = None`) or controlled.
pub fn meta_coupled<'m>(
    sys: &'m MetaSystem,
    xs: &DMatrix<f64>,
    xq: &DMatrix<f64>,
    tau: f64,
    controller: Option<ControllerSettings>,
) -> Result<CoupledSystem<'m, MetaSystem>> {
    let loss = Arc::new(QueryLoss {
        learner: sys.learner().clone(),
    });
    let objective = Objective::of(loss, LossScale::BatchMean, xs.ncols());
    CoupledSystem::new(sys, xs.clone(), xq.clone(), objective, tau, controller)
}

/// An error unless every record of `solved` converged.
fn ensure_converged(what: &str, solved: &BatchSteadyState) -> Result<()> {
    match solved
        .records
        .iter()
        .enumerate()
        .find(|(_, r)| !r.converged())
    {
        None => Ok(()),
        Some((j, r)) => Err(invalid(
            what,
            match r.termination {
                Termination::Fold { lambda } => format!(
                    "task {j}: the branch folds at control strength {lambda:.4} (residual {:.3e})",
                    r.residual
                ),
                _ => format!(
                    "task {j}: {} after {} steps, residual {:.3e}",
                    r.termination.name(),
                    r.steps,
                    r.residual
                ),
            },
            "a converged Newton-Krylov solve (after a fold, try a larger --alpha or another --seed)",
        )),
    }
}

/// The free equilibrium phi* of `free` (n x B) by Newton-Krylov to `tol`, then refined.
pub fn meta_free_equilibrium(
    free: &CoupledSystem<'_, MetaSystem>,
    tol: f64,
) -> Result<DMatrix<f64>> {
    let n = free.model().state_dim();
    let (phi0, records) = free_equilibrium(free, &meta_newton(tol, n));
    let records = records.expect("the inner problem has no closed-form equilibrium");
    ensure_converged("free equilibrium", &records)?;
    refine(free, &phi0)
}

/// The controlled equilibrium of `c` (3 n x B): the branch equilibrium of spec 2.2, followed
/// from the free one by continuation in the control strength with a Newton-Krylov corrector
/// to `tol` (and its stability check), then refined. A fold of the branch is an error.
///
/// The branch rather than the flow: under strong control (alpha <= 0.1 here) Newton-Krylov
/// from the free equilibrium stalls and the fallback integration is slow, and under weak
/// control the flow certificate's integration does not settle within its time limit.
pub fn meta_controlled_equilibrium(
    c: &CoupledSystem<'_, MetaSystem>,
    tol: f64,
) -> Result<DMatrix<f64>> {
    let phi0 = meta_free_equilibrium(&c.free(), tol)?;
    let n = c.model().state_dim();
    let s = branch_equilibrium(c, &phi0, &meta_newton(tol, n), &BranchSettings::default())?;
    ensure_converged("controlled equilibrium", &s)?;
    refine(c, &s.states)
}

/// `H_alpha = combine * sum_tasks E_alpha(phi*)` at the controlled equilibrium `z` of `c`.
pub fn meta_h_alpha(c: &CoupledSystem<'_, MetaSystem>, z: &DMatrix<f64>) -> Result<f64> {
    let beta = c
        .controller()
        .ok_or_else(|| invalid("controller", "none", "a controlled system"))?
        .beta();
    Ok(combine(c, &relaxed_energy(c, &c.phi(z), beta)))
}

/// Results of the meta-learning checks.
#[derive(Clone, Debug, Serialize)]
pub struct MetaCheckReport {
    /// Layer sizes of the learner and its parameter count n.
    pub learner: Vec<usize>,
    pub num_params: usize,
    pub tasks: usize,
    /// Alpha of the finite-difference check of H_alpha.
    pub fd_alpha: f64,
    /// LCP meta-update `lambda sum psi*` vs -(finite-difference gradient of H_alpha), relative.
    #[serde(rename = "fd_rel_error_lcp_vs_H")]
    pub fd_rel_error_lcp_vs_h: f64,
    /// Implicit meta-gradient by CG vs finite-difference gradient of L_out(phi*(theta)).
    #[serde(rename = "fd_rel_error_implicit_vs_L")]
    pub fd_rel_error_implicit_vs_l: f64,
    /// Largest CG iteration count over the tasks.
    pub cg_iterations: usize,
    /// Largest final relative CG residual over the tasks.
    pub cg_relative_residual: f64,
    pub cg_converged: bool,
    /// Alphas of the alignment check.
    pub alphas: Vec<f64>,
    /// cosine(LCP update, -implicit gradient) per alpha.
    pub cosine_lcp_vs_implicit: Vec<f64>,
    /// |LCP update| / (beta |implicit gradient|) per alpha (tends to 1 for weak control).
    pub norm_ratio_lcp_vs_beta_implicit: Vec<f64>,
    /// Whether the cosine never decreases as alpha grows (reported, not required).
    pub cosine_nondecreasing: bool,
    pub fd_tolerance: f64,
    pub cosine_tolerance: f64,
    pub passed_fd_lcp: bool,
    pub passed_fd_implicit: bool,
    /// The cosine at the largest alpha reaches the tolerance and is not below the smallest
    /// alpha's.
    pub passed_alignment: bool,
}

impl MetaCheckReport {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.passed_fd_lcp && self.passed_fd_implicit && self.passed_alignment
    }
}

/// The one relative error `|a - r| / max(|a|, |r|)` of theta.
fn relative_error(analytic: &Params, reference: &Params) -> f64 {
    relative_errors(analytic, reference)
        .iter()
        .map(|e| e.rel_error)
        .fold(0.0, |a, b| if b.is_nan() { f64::NAN } else { a.max(b) })
}

/// Runs the checks and reports the numbers; `passed_*` compare them with the tolerances.
pub fn run_meta_checks(s: &MetaCheckSettings) -> Result<MetaCheckReport> {
    s.validate()?;
    let sys = random_meta_system(&s.learner, s.lambda, s.support, s.seed)?;
    let (xs, xq) = sinusoid_tasks(
        sys.learner(),
        s.tasks,
        s.support,
        s.query,
        s.seed.wrapping_add(1),
    );
    let tol = s.solver_tolerance;
    let ctrl = s.controller;

    // 6.3: the LCP meta-update equals -grad H_alpha.
    let controlled = meta_coupled(&sys, &xs, &xq, s.tau, Some(ctrl))?;
    progress::report("check: controlled equilibrium z*", 0, 1);
    let z_star = meta_controlled_equilibrium(&controlled, tol)?;
    let update = least_control_update(&controlled, &z_star);
    let h_alpha = |m: &MetaSystem| -> Result<f64> {
        let c = meta_coupled(m, &xs, &xq, s.tau, Some(ctrl))?;
        meta_h_alpha(&c, &refine(&c, &z_star)?)
    };
    let mut minus_fd_h =
        finite_difference_gradient(&sys, None, s.fd_step, "check: FD probe of H_alpha", h_alpha)?;
    minus_fd_h.scale(-1.0);
    let fd_lcp = relative_error(&update, &minus_fd_h);

    // 6.4: the implicit meta-gradient equals grad L_out(phi*(theta)).
    let free = controlled.free();
    progress::report("check: free equilibrium and implicit meta-gradient", 0, 1);
    let phi0 = meta_free_equilibrium(&free, tol)?;
    let (implicit, cg) = implicit_meta_gradient(&free, &phi0, s.cg_tolerance, s.cg_max_iterations)?;
    let outer_loss = |m: &MetaSystem| -> Result<f64> {
        let f = meta_coupled(m, &xs, &xq, s.tau, None)?;
        let phi = refine(&f, &phi0)?;
        Ok(combine(&f, &f.losses(&phi)))
    };
    let fd_l = finite_difference_gradient(
        &sys,
        None,
        s.fd_step,
        "check: FD probe of L_out",
        outer_loss,
    )?;
    let fd_implicit = relative_error(&implicit, &fd_l);

    // 6.4: alignment of the LCP update with -implicit as alpha grows.
    let mut cosines = Vec::new();
    let mut ratios = Vec::new();
    for (i, &alpha) in s.alphas.iter().enumerate() {
        progress::report(&format!("check: alpha {alpha:e}"), i, s.alphas.len());
        let c = ControllerSettings { alpha, ..ctrl };
        let sys_c = meta_coupled(&sys, &xs, &xq, s.tau, Some(c))?;
        let z = meta_controlled_equilibrium(&sys_c, tol)?;
        let (cosine, ratio) =
            compare_with_gradient(&least_control_update(&sys_c, &z), &implicit, c.beta());
        cosines.push(cosine);
        ratios.push(ratio);
    }
    let nan = f64::NAN;
    let (first, last) = (
        *cosines.first().unwrap_or(&nan),
        *cosines.last().unwrap_or(&nan),
    );
    let cosine_nondecreasing = cosines.windows(2).all(|w| w[1] >= w[0] - 1e-12);
    Ok(MetaCheckReport {
        learner: s.learner.clone(),
        num_params: sys.state_dim(),
        tasks: s.tasks,
        fd_alpha: ctrl.alpha,
        fd_rel_error_lcp_vs_h: fd_lcp,
        fd_rel_error_implicit_vs_l: fd_implicit,
        cg_iterations: cg.max_iterations,
        cg_relative_residual: cg.max_relative_residual,
        cg_converged: cg.converged,
        alphas: s.alphas.clone(),
        passed_fd_lcp: fd_lcp <= s.fd_tolerance,
        passed_fd_implicit: fd_implicit <= s.fd_tolerance && cg.converged,
        passed_alignment: last >= s.cosine_tolerance && last >= first - 1e-12,
        cosine_lcp_vs_implicit: cosines,
        norm_ratio_lcp_vs_beta_implicit: ratios,
        cosine_nondecreasing,
        fd_tolerance: s.fd_tolerance,
        cosine_tolerance: s.cosine_tolerance,
    })
}

/// What the CG solves did, in words.
fn cg_summary(r: &CgReport) -> String {
    format!(
        "{} iterations, relative residual {:.3e}{}",
        r.max_iterations,
        r.max_relative_residual,
        if r.converged { "" } else { " (not converged)" }
    )
}

/// The report as the tables `lcsim check --system meta` prints.
pub fn render_meta_text(s: &MetaCheckSettings, r: &MetaCheckReport) -> String {
    let mut out = String::new();
    write_tables(&mut out, s, r).expect("writing to a String cannot fail");
    out
}

fn write_tables(out: &mut String, s: &MetaCheckSettings, r: &MetaCheckReport) -> std::fmt::Result {
    use std::fmt::Write;
    writeln!(
        out,
        "lcsim check --system meta: learner {:?} (tanh, n = {}), {} sinusoid tasks, K = {} support, Q = {} query, lambda = {}, seed {}, newton-krylov to {:.0e} + Newton refinement",
        s.learner, r.num_params, s.tasks, s.support, s.query, s.lambda, s.seed, s.solver_tolerance
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "(c) LCP meta-update lambda sum psi* vs -dH_alpha/dtheta by central differences (alpha = {}, beta = {})",
        s.controller.alpha,
        s.controller.beta()
    )?;
    writeln!(
        out,
        "    rel. error {:>12.3e}  <= {:.0e}  {}",
        r.fd_rel_error_lcp_vs_h,
        r.fd_tolerance,
        verdict(r.passed_fd_lcp)
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "(d) implicit meta-gradient (CG: {}) vs dL_out(phi*(theta))/dtheta by central differences",
        cg_summary(&CgReport {
            max_iterations: r.cg_iterations,
            mean_iterations: r.cg_iterations as f64,
            max_relative_residual: r.cg_relative_residual,
            unconverged: usize::from(!r.cg_converged),
            converged: r.cg_converged,
        })
    )?;
    writeln!(
        out,
        "    rel. error {:>12.3e}  <= {:.0e}  {}",
        r.fd_rel_error_implicit_vs_l,
        r.fd_tolerance,
        verdict(r.passed_fd_implicit)
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "(d) alignment of the LCP update with -implicit gradient as alpha grows"
    )?;
    writeln!(
        out,
        "    {:>10} {:>14} {:>25}",
        "alpha", "cosine", "|LCP|/(beta |implicit|)"
    )?;
    for ((a, c), q) in r
        .alphas
        .iter()
        .zip(&r.cosine_lcp_vs_implicit)
        .zip(&r.norm_ratio_lcp_vs_beta_implicit)
    {
        writeln!(out, "    {a:>10.3e} {c:>14.9} {q:>25.6}")?;
    }
    writeln!(
        out,
        "    cosine {} with alpha",
        if r.cosine_nondecreasing {
            "never decreases"
        } else {
            "does NOT always rise"
        }
    )?;
    writeln!(
        out,
        "    cosine at the largest alpha >= {}  {}",
        r.cosine_tolerance,
        verdict(r.passed_alignment)
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        if r.passed() {
            "all checks passed"
        } else {
            "SOME CHECKS FAILED"
        }
    )
}

/// The report as the JSON object `lcsim check --system meta --json` prints: version,
/// settings (Debug), report and verdict.
pub fn render_meta_json(s: &MetaCheckSettings, r: &MetaCheckReport) -> String {
    let json = serde_json::json!({
        "lcsim_version": env!("CARGO_PKG_VERSION"),
        "system": "meta",
        "settings": format!("{s:?}"),
        "report": r,
        "passed": r.passed(),
    });
    serde_json::to_string_pretty(&json).expect("report serialises")
}
