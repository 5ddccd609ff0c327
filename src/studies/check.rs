//! The checks that pin the implementation down (spec 6.3 and 6.4), on a random network:
//! the least-control update against finite differences of `H_alpha`, the RBP gradient
//! against finite differences of `L(phi0)`, and the alignment of the two as alpha grows.
//! The variants: LCP-EBD's energy minimum and update equal LCP-DI's; LCP-KP with
//! B = W^T, G = D^T is LCP-DI; LCP-KP with random feedback and LCP-LF with a random Q
//! have no exact reference, and their cosine to the LCP-DI update is reported.

use crate::control::{ControllerSettings, CoupledSystem, Feedback, LossScale, Objective};
use crate::error::{ensure_positive, invalid, LcsimError, Result};
use crate::learn::energy::EnergyDescent;
use crate::learn::feedback::{initial_linear_feedback, kolen_pollack_of, linear_feedback_update};
use crate::learn::plasticity::update_from_control;
use crate::learn::plasticity::{combine, least_control_update, relaxed_energy};
use crate::learn::rbp::{adjoint_system, gradient_from_adjoints, rbp_gradient};
use crate::numerics::activation::Activation;
use crate::numerics::rng::Rng;
use crate::solve::{newton_polish, solve_batch, SolverSettings, VectorField};
use crate::studies::alignment::compare_with_gradient;
use crate::studies::progress;
use crate::system::loss::{one_hot, Loss};
use crate::system::params::Params;
use crate::system::rate::{RateNetwork, Topology};
use crate::system::EquilibriumSystem;
use nalgebra::DMatrix;
use serde::Serialize;
use std::sync::Arc;

/// What to check and on which random network.
#[derive(Clone, Debug)]
pub struct CheckSettings {
    pub n_x: usize,
    pub topology: Topology,
    pub n_y: usize,
    pub batch: usize,
    pub seed: u64,
    pub activation: Activation,
    pub loss: Loss,
    pub loss_scale: LossScale,
    pub tau_v: f64,
    /// Controller of the finite-difference check (its alpha is used there).
    pub controller: ControllerSettings,
    /// Alphas of the alignment check, increasing.
    pub alphas: Vec<f64>,
    /// Central finite-difference step.
    pub fd_step: f64,
    /// Relaxation settings (each equilibrium is then refined by Newton's method).
    pub solver: SolverSettings,
    /// Largest accepted relative error of the finite-difference checks.
    pub fd_tolerance: f64,
    /// Smallest accepted cosine at the largest alpha.
    pub cosine_tolerance: f64,
}

impl Default for CheckSettings {
    fn default() -> Self {
        CheckSettings {
            n_x: 5,
            topology: Topology::Recurrent { hidden: 8 },
            n_y: 3,
            batch: 3,
            seed: 0,
            activation: Activation::Tanh,
            loss: Loss::CrossEntropy,
            loss_scale: LossScale::BatchMean,
            tau_v: 1.0,
            controller: ControllerSettings::default(),
            alphas: vec![1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3],
            fd_step: 1e-5,
            solver: SolverSettings::default(),
            fd_tolerance: 1e-6,
            cosine_tolerance: 0.999,
        }
    }
}

/// Relative error of one tensor, `|fd - analytic| / max(|fd|, |analytic|)`.
#[derive(Clone, Debug, Serialize)]
pub struct TensorError {
    pub name: String,
    pub rel_error: f64,
}

/// What the checks of spec 6.3 and 6.4 measured on one system (the rate network, a conv net,
/// a DEQ: [`spec_checks`]).
#[derive(Clone, Debug, Serialize)]
pub struct SpecReport {
    /// Max over tensors: LCP-DI update vs -finite-difference gradient of H_alpha.
    #[serde(rename = "fd_rel_error_lcp_vs_H")]
    pub fd_rel_error_lcp_vs_h: f64,
    pub lcp_per_tensor: Vec<TensorError>,
    /// Max over tensors: RBP gradient vs finite-difference gradient of L(phi0).
    pub fd_rel_error_rbp_vs_l: f64,
    pub rbp_per_tensor: Vec<TensorError>,
    /// Alphas of the alignment check.
    pub alphas: Vec<f64>,
    /// cosine(LCP update, -RBP gradient) per alpha.
    pub cosine_lcp_vs_rbp: Vec<f64>,
    /// |LCP update| / (beta |RBP gradient|) per alpha (tends to 1 for weak control).
    pub norm_ratio_lcp_vs_beta_rbp: Vec<f64>,
    pub fd_tolerance: f64,
    pub cosine_tolerance: f64,
    pub passed_fd_lcp: bool,
    pub passed_fd_rbp: bool,
    pub passed_alignment: bool,
}

impl SpecReport {
    /// True when the three checks passed.
    pub fn passed(&self) -> bool {
        self.passed_fd_lcp && self.passed_fd_rbp && self.passed_alignment
    }
}

/// Results of all checks on the rate network: spec 6.3/6.4 and the variants.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    #[serde(flatten)]
    pub spec: SpecReport,
    /// LCP-EBD (energy flow, Newton-refined): |phi*_EBD - phi*_DI| / |phi*_DI|.
    pub ebd_rel_error_equilibrium: f64,
    /// LCP-EBD update vs LCP-DI update, relative.
    pub ebd_rel_error_update: f64,
    /// LCP-KP with B = W^T, G = D^T: update vs LCP-DI update, relative.
    pub kp_transposes_rel_error_update: f64,
    /// cosine(LCP-KP update with its random initial B, G; LCP-DI update) (no pass criterion).
    pub kp_random_cosine_to_di: f64,
    /// cosine(LCP-LF update with its random initial Q; LCP-DI update) (no pass criterion).
    pub lf_random_cosine_to_di: f64,
    pub passed_variants: bool,
}

impl CheckReport {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.spec.passed() && self.passed_variants
    }
}

impl CheckSettings {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            return Err(invalid("batch", 0, "an integer >= 1"));
        }
        let sorted = crate::studies::alignment::validate_alphas("alphas", &self.alphas)?;
        if sorted != self.alphas {
            return Err(invalid(
                "alphas",
                format!("{:?}", self.alphas),
                "increasing values (the alignment check reads the cosine at the largest alpha, the last)",
            ));
        }
        ensure_positive("fd_step", self.fd_step)?;
        ensure_positive("fd_tolerance", self.fd_tolerance)?;
        ensure_positive("dynamics.tau_v", self.tau_v)?;
        self.controller.validate()?;
        self.solver.validate()?;
        crate::config::check_memory(
            "the check",
            self.memory_estimate(),
            "--hidden, --inputs, --outputs, --batch",
        )
    }

    /// Estimated peak memory in bytes: `8 [8 P + B (m_anderson + k_stability + 4) 3 d]`,
    /// with P the parameters (the network, its finite-difference copies, updates and
    /// gradients), B the batch and d the network's units.
    pub fn memory_estimate(&self) -> f64 {
        let units = (self.topology.hidden_units() + self.n_y) as f64;
        let params = (self.n_x as f64 + units) * units + units;
        let s = &self.solver;
        let histories = s.anderson.memory as f64 + s.accelerated.stability.dim as f64 + 4.0;
        8.0 * (8.0 * params + self.batch as f64 * histories * 3.0 * units)
    }
}

/// A random network with random inputs in [0, 1) and random targets (one-hot labels for
/// cross-entropy, standard normal for squared error), all from `seed`.
pub fn random_problem(s: &CheckSettings) -> Result<(RateNetwork, DMatrix<f64>, DMatrix<f64>)> {
    let net = RateNetwork::new(s.n_x, s.topology.clone(), s.n_y, s.activation, s.seed)?;
    let (x, t) = random_batch(s, s.n_x);
    Ok((net, x, t))
}

/// `s.batch` random inputs of `n_x` entries in [0, 1) and random targets (one-hot labels for
/// cross-entropy, standard normal for squared error), from `s.seed + 1`.
pub fn random_batch(s: &CheckSettings, n_x: usize) -> (DMatrix<f64>, DMatrix<f64>) {
    let mut rng = Rng::seed_from_u64(s.seed.wrapping_add(1));
    let x = DMatrix::from_fn(n_x, s.batch, |_, _| rng.uniform());
    let t = match s.loss {
        Loss::CrossEntropy => {
            let labels: Vec<usize> = (0..s.batch)
                .map(|_| ((rng.uniform() * s.n_y as f64) as usize).min(s.n_y - 1))
                .collect();
            one_hot(&labels, s.n_y)
        }
        Loss::SquaredError => DMatrix::from_fn(s.n_y, s.batch, |_, _| rng.normal()),
    };
    (x, t)
}

/// Equilibrium of every sample, relaxed by the ODE solver and refined by Newton's method.
/// An unconverged relaxation or a refinement that leaves `max |r| > 1e-9` is an error.
pub fn precise_equilibrium<M: EquilibriumSystem>(
    system: &CoupledSystem<'_, M>,
    opts: &SolverSettings,
) -> Result<DMatrix<f64>> {
    precise_equilibrium_from(system, &system.initial_state(), opts)
}

/// [`precise_equilibrium`] relaxed from the states `z0`.
pub fn precise_equilibrium_from<M: EquilibriumSystem>(
    system: &CoupledSystem<'_, M>,
    z0: &DMatrix<f64>,
    opts: &SolverSettings,
) -> Result<DMatrix<f64>> {
    let relaxed = solve_batch(system, z0, opts);
    if let Some((j, r)) = relaxed
        .records
        .iter()
        .enumerate()
        .find(|(_, r)| !r.converged())
    {
        return Err(invalid(
            "equilibrium",
            format!(
                "sample {j}: {} at t = {:.3e} after {} steps, residual {:.3e}",
                r.termination.name(),
                r.time,
                r.steps,
                r.residual
            ),
            "a converged relaxation (raise solver.max_time / max_steps or change the dynamics)",
        ));
    }
    refine(system, &relaxed.states)
}

/// Newton refinement of every column of z near an equilibrium (dense Jacobian, at most 30
/// iterations). A column left with `max |r| > 1e-9` is an error.
pub fn refine<M: EquilibriumSystem>(
    system: &CoupledSystem<'_, M>,
    z: &DMatrix<f64>,
) -> Result<DMatrix<f64>> {
    let mut out = z.clone();
    for j in 0..z.ncols() {
        let sample = system.sample(j);
        let col = newton_polish(&sample, &z.columns(j, 1).into_owned(), 30);
        let r = sample.residual(&col).amax();
        if r.is_nan() || r > 1e-9 {
            return Err(invalid(
                "equilibrium",
                format!("sample {j}: Newton refinement left residual {r:.3e}"),
                "residual <= 1e-9",
            ));
        }
        out.set_column(j, &col.column(0));
    }
    Ok(out)
}

/// Central finite differences of `objective(theta)` over every parameter entry of `net`
/// (entries where `mask` is 0, outside a layered net's structure, are skipped and left zero);
/// each probe is reported to [`progress`] as a step of `phase`.
pub fn finite_difference_gradient<M: EquilibriumSystem + Clone>(
    net: &M,
    mask: Option<&Params>,
    step: f64,
    phase: &str,
    objective: impl Fn(&M) -> Result<f64>,
) -> Result<Params> {
    let mut grad = net.params().zeros_like();
    let mut probe = net.clone();
    let probed = |k: usize| mask.is_none_or(|m| m.flat_get(k) != 0.0);
    let n = net.params().num_scalars();
    let total = (0..n).filter(|&k| probed(k)).count();
    let mut done = 0;
    for k in 0..n {
        if !probed(k) {
            continue;
        }
        progress::report(phase, done, total);
        done += 1;
        let theta = net.params().flat_get(k);
        let h = step * theta.abs().max(1.0);
        probe.params_mut().flat_set(k, theta + h);
        let up = objective(&probe)?;
        probe.params_mut().flat_set(k, theta - h);
        let down = objective(&probe)?;
        probe.params_mut().flat_set(k, theta);
        grad.flat_set(k, (up - down) / (2.0 * h));
    }
    Ok(grad)
}

/// Per-tensor relative errors of `analytic` against `reference`.
pub fn relative_errors(analytic: &Params, reference: &Params) -> Vec<TensorError> {
    analytic
        .iter()
        .zip(reference.iter())
        .map(|((name, a), (_, r))| {
            let den = a.norm().max(r.norm());
            let rel = if den > 0.0 { (a - r).norm() / den } else { 0.0 };
            TensorError {
                name: name.to_string(),
                rel_error: rel,
            }
        })
        .collect()
}

fn max_error(errors: &[TensorError]) -> f64 {
    errors
        .iter()
        .map(|e| e.rel_error)
        .fold(0.0, |a, b| if b.is_nan() { f64::NAN } else { a.max(b) })
}

/// Runs checks 6.3 and 6.4 and the variants' on the random rate network and reports the
/// numbers; `passed_*` compare them with the tolerances.
pub fn run_checks(s: &CheckSettings) -> Result<CheckReport> {
    s.validate()?;
    let (net, x, t) = random_problem(s)?;
    let checked = spec_checks(&net, net.mask(), &x, &t, s)?;
    let controlled = CoupledSystem::new(
        &net,
        x.clone(),
        t.clone(),
        Objective::new(s.loss, s.loss_scale, s.batch),
        s.tau_v,
        Some(s.controller),
    )?;
    progress::report("check: variants (EBD, KP, LF)", 0, 1);
    let variants = check_variants(
        &controlled,
        &checked.phi0,
        &checked.z_star,
        &checked.update,
        &s.solver,
    )?;
    Ok(CheckReport {
        spec: checked.report,
        passed_variants: variants.ebd_equilibrium <= s.fd_tolerance
            && variants.ebd_update <= s.fd_tolerance
            && variants.kp_transposes <= s.fd_tolerance,
        ebd_rel_error_equilibrium: variants.ebd_equilibrium,
        ebd_rel_error_update: variants.ebd_update,
        kp_transposes_rel_error_update: variants.kp_transposes,
        kp_random_cosine_to_di: variants.kp_random_cosine,
        lf_random_cosine_to_di: variants.lf_random_cosine,
    })
}

/// The checks of spec 6.3 and 6.4 on any system, with what later checks reuse.
pub struct SpecChecks {
    pub report: SpecReport,
    /// The free equilibrium phi0 and the controlled equilibrium z* (at `s.controller`), both
    /// refined by Newton's method.
    pub phi0: DMatrix<f64>,
    pub z_star: DMatrix<f64>,
    /// The LCP-DI update at z*.
    pub update: Params,
}

/// Spec 6.3 and 6.4 on `net` with inputs x and targets t (the loss, loss scale, time
/// constant, controller, alphas, FD step, solver and tolerances of `s`; its network fields
/// are not read): the LCP-DI update equals `-grad H_alpha` by central differences, the RBP
/// gradient equals `grad L(phi0)`, and the cosine between the update and `-RBP` tends to 1
/// as alpha grows. `mask` marks the parameter entries that are probed (None: all): the
/// entries that exist in a layered net's structure, or a sample of a large system's; the
/// analytic update and gradient are compared on those entries only.
pub fn spec_checks<M: EquilibriumSystem + Clone>(
    net: &M,
    mask: Option<&Params>,
    x: &DMatrix<f64>,
    t: &DMatrix<f64>,
    s: &CheckSettings,
) -> Result<SpecChecks> {
    let objective = Objective::new(s.loss, s.loss_scale, x.ncols());
    let ctrl = s.controller;
    let beta = ctrl.beta();
    let system = |n, c| CoupledSystem::new(n, x.clone(), t.clone(), objective.clone(), s.tau_v, c);

    // The free equilibrium phi0; every controlled equilibrium is the flow's from phi0 (spec 2.2).
    let free = system(net, None)?;
    progress::report("check: free equilibrium phi0", 0, 1);
    let phi0 = precise_equilibrium(&free, &s.solver)?;
    let controlled_from_phi0 = |sys: &CoupledSystem<'_, M>| {
        precise_equilibrium_from(sys, &sys.state_with_phi(&phi0)?, &s.solver)
    };

    // 6.3: the LCP-DI update equals -grad H_alpha.
    let controlled = system(net, Some(ctrl))?;
    progress::report("check: controlled equilibrium z*", 0, 1);
    let z_star = controlled_from_phi0(&controlled)?;
    let update = least_control_update(&controlled, &z_star);
    let h_alpha = |n: &M| -> Result<f64> {
        let sys = CoupledSystem::new(
            n,
            x.clone(),
            t.clone(),
            objective.clone(),
            s.tau_v,
            Some(ctrl),
        )?;
        let z = refine(&sys, &z_star)?;
        Ok(combine(&sys, &relaxed_energy(&sys, &sys.phi(&z), beta)))
    };
    let probed = |p: &Params| {
        let mut p = p.clone();
        if let Some(mask) = mask {
            p.mask_with(mask);
        }
        p
    };
    let mut minus_fd_h =
        finite_difference_gradient(net, mask, s.fd_step, "check: FD probe of H_alpha", h_alpha)?;
    minus_fd_h.scale(-1.0);
    let lcp_per_tensor = relative_errors(&probed(&update), &minus_fd_h);

    // 6.4: the RBP gradient equals grad L(phi0).
    progress::report("check: RBP adjoint", 0, 1);
    let (_, adjoints) = rbp_gradient(&free, &phi0, &s.solver);
    if adjoints.fraction_converged() < 1.0 {
        return Err(LcsimError::InvalidValue {
            field: "adjoint".into(),
            value: format!("max residual {:.3e}", adjoints.max_residual()),
            allowed: "converged adjoint solves".into(),
        });
    }
    // The adjoint system is linear: one Newton step solves it to machine precision.
    let mut lambda = adjoints.states.clone();
    let adjoint = adjoint_system(&free, &phi0);
    for j in 0..lambda.ncols() {
        let adjoint = adjoint.select_samples(&[j]);
        let col = newton_polish(&adjoint, &lambda.columns(j, 1).into_owned(), 3);
        lambda.set_column(j, &col.column(0));
    }
    let rbp = gradient_from_adjoints(&free, &phi0, &lambda);
    let loss_at_free = |n: &M| -> Result<f64> {
        let sys = CoupledSystem::new(n, x.clone(), t.clone(), objective.clone(), s.tau_v, None)?;
        let z = refine(&sys, &phi0)?;
        Ok(combine(&sys, &sys.losses(&z)))
    };
    let fd_l =
        finite_difference_gradient(net, mask, s.fd_step, "check: FD probe of L", loss_at_free)?;
    let rbp_per_tensor = relative_errors(&probed(&rbp), &fd_l);

    // 6.4: alignment of the LCP update with -RBP as alpha grows.
    let mut cosines = Vec::new();
    let mut ratios = Vec::new();
    for (i, &alpha) in s.alphas.iter().enumerate() {
        progress::report(&format!("check: alpha {alpha:e}"), i, s.alphas.len());
        let c = ControllerSettings { alpha, ..ctrl };
        let sys = system(net, Some(c))?;
        let z = controlled_from_phi0(&sys)?;
        let upd = least_control_update(&sys, &z);
        let (cosine, ratio) = compare_with_gradient(&upd, &rbp, c.beta());
        cosines.push(cosine);
        ratios.push(ratio);
    }

    let fd_lcp = max_error(&lcp_per_tensor);
    let fd_rbp = max_error(&rbp_per_tensor);
    let last = *cosines.last().unwrap_or(&f64::NAN);
    let report = SpecReport {
        fd_rel_error_lcp_vs_h: fd_lcp,
        lcp_per_tensor,
        fd_rel_error_rbp_vs_l: fd_rbp,
        rbp_per_tensor,
        alphas: s.alphas.clone(),
        passed_fd_lcp: fd_lcp <= s.fd_tolerance,
        passed_fd_rbp: fd_rbp <= s.fd_tolerance,
        passed_alignment: last >= s.cosine_tolerance,
        cosine_lcp_vs_rbp: cosines,
        norm_ratio_lcp_vs_beta_rbp: ratios,
        fd_tolerance: s.fd_tolerance,
        cosine_tolerance: s.cosine_tolerance,
    };
    Ok(SpecChecks {
        report,
        phi0,
        z_star,
        update,
    })
}

/// What [`check_variants`] measured.
struct VariantErrors {
    ebd_equilibrium: f64,
    ebd_update: f64,
    kp_transposes: f64,
    kp_random_cosine: f64,
    lf_random_cosine: f64,
}

/// The variants against LCP-DI's precise equilibrium `z_di` and update `di` on `controlled`,
/// each relaxed from the free equilibrium `phi0`.
fn check_variants(
    controlled: &CoupledSystem<'_, RateNetwork>,
    phi0: &DMatrix<f64>,
    z_di: &DMatrix<f64>,
    di: &Params,
    opts: &SolverSettings,
) -> Result<VariantErrors> {
    let net = controlled.model();
    let beta = controlled.controller().map_or(f64::NAN, |c| c.beta());
    let flow = EnergyDescent::new(controlled, beta)?;
    let phi_di = controlled.phi(z_di);
    let solved = solve_batch(&flow, phi0, opts);
    let mut phi = solved.states.clone();
    for j in 0..phi.ncols() {
        let one = flow.select_samples(&[j]);
        let col = newton_polish(&one, &phi.columns(j, 1).into_owned(), 30);
        phi.set_column(j, &col.column(0));
    }
    let ebd_equilibrium = (&phi - &phi_di).norm() / phi_di.norm();
    let ebd = update_from_control(controlled, &phi, &flow.control(&phi));

    let kp = kolen_pollack_against_di(controlled, phi0, di, opts)?;
    let lf = controlled
        .clone()
        .with_feedback(Feedback::Linear(Arc::new(initial_linear_feedback(net, 1))))?;
    let z_lf = precise_equilibrium_from(&lf, &lf.state_with_phi(phi0)?, opts)?;
    let lf_random = linear_feedback_update(&lf, &z_lf)?;
    Ok(VariantErrors {
        ebd_equilibrium,
        ebd_update: relative_difference(&ebd, di),
        kp_transposes: kp.transposes_rel_error,
        kp_random_cosine: kp.random_cosine,
        lf_random_cosine: lf_random.cosine(di),
    })
}

/// LCP-KP against LCP-DI's update `di` on `controlled`, each relaxed from phi0.
pub(crate) struct KolenPollackCheck {
    /// The feedback weights set to the transposes they stand in for
    /// (`KolenPollack::transposed_update` of the system's own parameters): KP is DI, so the
    /// relative difference of the updates is the solver's error.
    pub transposes_rel_error: f64,
    /// cosine(KP update with the system's random initial feedback (seed 1), DI update).
    pub random_cosine: f64,
}

/// [`KolenPollackCheck`] of any system that offers LCP-KP (an error names the system otherwise).
pub(crate) fn kolen_pollack_against_di<M: EquilibriumSystem + Clone>(
    controlled: &CoupledSystem<'_, M>,
    phi0: &DMatrix<f64>,
    di: &Params,
    opts: &SolverSettings,
) -> Result<KolenPollackCheck> {
    let kp = kolen_pollack_of(controlled.model())?;
    let update_with = |feedback: Params| -> Result<Params> {
        let sys = controlled
            .clone()
            .with_feedback(Feedback::KolenPollack(Arc::new(feedback)))?;
        let z = precise_equilibrium_from(&sys, &sys.state_with_phi(phi0)?, opts)?;
        Ok(least_control_update(&sys, &z))
    };
    let transposes = update_with(kp.transposed_update(controlled.model().params()))?;
    let random = update_with(kp.init_feedback(1))?;
    Ok(KolenPollackCheck {
        transposes_rel_error: relative_difference(&transposes, di),
        random_cosine: random.cosine(di),
    })
}

/// `|a - b| / max(|a|, |b|)` over every entry.
fn relative_difference(a: &Params, b: &Params) -> f64 {
    let mut d = a.clone();
    d.axpy(-1.0, b);
    d.norm() / a.norm().max(b.norm()).max(f64::MIN_POSITIVE)
}

/// "PASS" or "FAIL".
pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

/// A table of per-tensor relative errors with its maximum and verdict.
fn write_errors(
    out: &mut String,
    errors: &[TensorError],
    max: f64,
    tol: f64,
    passed: bool,
) -> std::fmt::Result {
    use std::fmt::Write;
    writeln!(out, "    {:<8} {:>12}", "tensor", "rel. error")?;
    for e in errors {
        writeln!(out, "    {:<8} {:>12.3e}", e.name, e.rel_error)?;
    }
    writeln!(
        out,
        "    max      {max:>12.3e}  <= {tol:.0e}  {}",
        verdict(passed)
    )
}

/// The report as the tables `lcsim check` prints (one line each, newline-terminated).
pub fn render_text(s: &CheckSettings, r: &CheckReport) -> String {
    let mut out = String::new();
    write_tables(&mut out, s, r).expect("writing to a String cannot fail");
    out
}

fn write_tables(out: &mut String, s: &CheckSettings, r: &CheckReport) -> std::fmt::Result {
    use std::fmt::Write;
    writeln!(
        out,
        "lcsim check: random {:?}, n_x = {}, n_y = {}, batch {}, seed {}, {}, {} ({:?}), solver {}",
        s.topology,
        s.n_x,
        s.n_y,
        s.batch,
        s.seed,
        s.activation.name(),
        s.loss.name(),
        s.loss_scale,
        s.solver.method.name()
    )?;
    writeln!(out)?;
    write_spec_tables(out, &s.controller, &r.spec)?;
    writeln!(out)?;
    writeln!(
        out,
        "(3.2-3.4) the variants against LCP-DI at alpha = {}",
        s.controller.alpha
    )?;
    writeln!(
        out,
        "    LCP-EBD energy minimum vs DI equilibrium  {:>10.3e}  <= {:.0e}",
        r.ebd_rel_error_equilibrium, r.spec.fd_tolerance
    )?;
    writeln!(
        out,
        "    LCP-EBD update vs DI update               {:>10.3e}  <= {:.0e}",
        r.ebd_rel_error_update, r.spec.fd_tolerance
    )?;
    writeln!(
        out,
        "    LCP-KP (B = W^T, G = D^T) update vs DI    {:>10.3e}  <= {:.0e}  {}",
        r.kp_transposes_rel_error_update,
        r.spec.fd_tolerance,
        verdict(r.passed_variants)
    )?;
    writeln!(
        out,
        "    cosine to the DI update (no exact reference): LCP-KP random B, G {:.4}; LCP-LF random Q {:.4}",
        r.kp_random_cosine_to_di, r.lf_random_cosine_to_di
    )?;
    writeln!(out)?;
    writeln!(out, "{}", overall(r.passed()))
}

/// The last line of a check's tables.
pub(crate) fn overall(passed: bool) -> &'static str {
    if passed {
        "all checks passed"
    } else {
        "SOME CHECKS FAILED"
    }
}

/// The tables (c) and (d) of spec 6.3 and 6.4, for the controller of the FD check.
pub(crate) fn write_spec_tables(
    out: &mut String,
    controller: &ControllerSettings,
    r: &SpecReport,
) -> std::fmt::Result {
    use std::fmt::Write;
    writeln!(
        out,
        "(c) LCP-DI update vs -dH_alpha/dtheta by central differences (alpha = {}, beta = {})",
        controller.alpha,
        controller.beta()
    )?;
    write_errors(
        out,
        &r.lcp_per_tensor,
        r.fd_rel_error_lcp_vs_h,
        r.fd_tolerance,
        r.passed_fd_lcp,
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "(d) RBP gradient vs dL(phi0)/dtheta by central differences"
    )?;
    write_errors(
        out,
        &r.rbp_per_tensor,
        r.fd_rel_error_rbp_vs_l,
        r.fd_tolerance,
        r.passed_fd_rbp,
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "(d) alignment of the LCP update with -RBP gradient as alpha grows"
    )?;
    writeln!(
        out,
        "    {:>10} {:>14} {:>20}",
        "alpha", "cosine", "|LCP|/(beta |RBP|)"
    )?;
    for ((a, c), q) in r
        .alphas
        .iter()
        .zip(&r.cosine_lcp_vs_rbp)
        .zip(&r.norm_ratio_lcp_vs_beta_rbp)
    {
        writeln!(out, "    {a:>10.3e} {c:>14.9} {q:>20.6}")?;
    }
    writeln!(
        out,
        "    cosine at the largest alpha >= {}  {}",
        r.cosine_tolerance,
        verdict(r.passed_alignment)
    )
}

/// The report as the JSON object `lcsim check --json` prints: version, settings (Debug),
/// report and verdict.
pub fn render_json(s: &CheckSettings, r: &CheckReport) -> String {
    let json = serde_json::json!({
        "lcsim_version": env!("CARGO_PKG_VERSION"),
        "settings": format!("{s:?}"),
        "report": r,
        "passed": r.passed(),
    });
    serde_json::to_string_pretty(&json).expect("report serialises")
}
