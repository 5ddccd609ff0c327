//! Cost of a meta-gradient at equal accuracy (issue 14, item 8): meta-learning by least
//! control (LCP-DI, spec 7.1) against implicit MAML (CG on Hessian-vector products) and
//! first-order MAML, on `experiments/meta-sinusoid.toml` (meta-batches of 25 sinusoid tasks,
//! K = 10, learner 1-40-40-1 with 1,761 parameters, lambda 5, Newton-Krylov per task with the
//! stability check, Tsit45 fallback).
//!
//! Run with `cargo bench --bench meta`. Each configuration (the config with the `[solver]`,
//! `controller.alpha` or `meta.cg_tolerance` it names) computes the meta-gradient of the first
//! [`BATCHES`] meta-batches (tasks 0-24, 25-49, ...) at the initial theta on one thread: the
//! inner (free) solves, then LCP-DI's controlled solves and update `lambda sum psi*`, or
//! iMAML's CG, or FOMAML's query gradient. Its time per meta-batch is the median over
//! [`ROUNDS`] rounds in which the configurations take turns. Its accuracy is the relative
//! error `|g - g_exact| / |g_exact|` (the largest over the meta-batches) against the exact
//! implicit meta-gradient `dL_out(phi*(theta))/dtheta`: CG to 1e-12 at phi* polished by
//! Newton-Krylov to 1e-12. LCP-DI's estimate is `-(lambda sum psi*) / beta`, beta = k_i /
//! alpha (spec 2.1: it tends to the gradient as alpha grows); iMAML's error falls with the CG
//! tolerance. psi* ~ beta ~ 1/alpha, so the larger alphas are also measured at tighter solver
//! tolerances (with the fallback's local-error tolerances 100x and 10^4 x below).
//!
//! Every configuration at the config's solver tolerance runs with the flow certificate
//! (`solver.certify_flow`) off and on.
//! With it, LCP-DI above [`CERTIFIED_ALPHA_MAX`] takes minutes per meta-batch (a few tasks'
//! certificate integrations run to their step limit; at alpha 400 one meta-batch had not
//! finished after 21 min), so alpha 100 is timed once, on the first meta-batch, and larger
//! ones not at all. Last, for each error level, each method's first configuration in the
//! grid's order (weakest alpha, loosest tolerances) that reaches it.

use lcsim::config::{Config, Method};
use lcsim::control::{free_equilibrium, CoupledSystem};
use lcsim::learn::meta_gradient::{first_order_meta_gradient, implicit_meta_gradient};
use lcsim::learn::variant::ControlledEquilibrium;
use lcsim::solve::{solve_batch, BatchSteadyState};
use lcsim::system::meta::MetaSystem;
use lcsim::system::params::Params;
use lcsim::train::meta::meta_system;
use lcsim::train::{load_split, thread_pool};
use std::path::Path;
use std::time::Instant;

/// Meta-batches per configuration and round.
const BATCHES: usize = 4;
/// Rounds (medians are taken over them).
const ROUNDS: usize = 3;
/// LCP-DI's alphas and the solver tolerances (atol = rtol) tried at each. Its bias is about
/// 0.04 / alpha here (so 4, 40, 400 and 4000 fall just below 1e-2 .. 1e-5), but psi* ~ 1/alpha
/// while the solver's error is ~ its tolerance: the error also grows as alpha * tolerance,
/// and the config's 1e-6 limits it from alpha ~ 100 on.
const LCP_GRID: [(f64, &[f64]); 9] = [
    (1.0, &[1e-6]),
    (4.0, &[1e-6]),
    (10.0, &[1e-6]),
    (40.0, &[1e-6]),
    (100.0, &[1e-6, 1e-8]),
    (400.0, &[1e-6, 1e-8]),
    (1e3, &[1e-6, 1e-8, 1e-10]),
    (4e3, &[1e-6, 1e-8, 1e-10]),
    (1e4, &[1e-6, 1e-8, 1e-10]),
];
/// Largest alpha timed in every round with the flow certificate (at the config's solver
/// tolerance); up to [`CERTIFIED_ALPHA_ONCE`] it is timed once on the first meta-batch.
const CERTIFIED_ALPHA_MAX: f64 = 40.0;
const CERTIFIED_ALPHA_ONCE: f64 = 100.0;
/// iMAML's CG tolerances (relative residual), at the config's solver tolerance.
const CG_TOLERANCES: [f64; 8] = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8];
/// The config's solver tolerance (atol = rtol).
const SOLVER_TOLERANCE: f64 = 1e-6;
/// iMAML's tightest CG tolerance repeated at a tight solver tolerance.
const TIGHT_CG: (f64, f64) = (1e-8, 1e-8);
/// The error levels at which the methods are compared.
const LEVELS: [f64; 5] = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The 1-minute load average (what else ran on the machine), if readable.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

/// One configuration of the study: a method, its accuracy knob (alpha or the CG tolerance),
/// the solver tolerance and the flow certificate.
struct Setup {
    label: String,
    method: Method,
    certify: bool,
    /// Timed once on the first meta-batch instead of in every round.
    once: bool,
    config: Config,
}

fn setup(base: &Path, method: Method, knob: f64, tol: f64, certify: bool, once: bool) -> Setup {
    let mut overrides = vec![
        format!("method.name=\"{}\"", method.name()),
        format!("solver.atol={tol:e}"),
        format!("solver.rtol={tol:e}"),
        format!("solver.certify_flow={certify}"),
    ];
    if tol < SOLVER_TOLERANCE {
        // The Tsit45 fallback must be able to reach the tighter steady-state test.
        overrides.push(format!("solver.ode_rtol={:e}", tol / 1e2));
        overrides.push(format!("solver.ode_atol={:e}", tol / 1e4));
    }
    let label = match method {
        Method::LcpDi => {
            overrides.push(format!("controller.alpha={knob:e}"));
            format!("lcp-di, alpha {knob}, solver {tol:.0e}")
        }
        Method::Imaml => {
            overrides.push(format!("meta.cg_tolerance={knob:e}"));
            format!("imaml, CG {knob:.0e}, solver {tol:.0e}")
        }
        _ => format!("{}, solver {tol:.0e}", method.name()),
    };
    Setup {
        label,
        method,
        certify,
        once,
        config: Config::load(Some(base), &overrides).expect("a valid configuration"),
    }
}

/// What the solves of a configuration did.
#[derive(Clone, Copy, Default)]
struct Tally {
    /// Solves that did not converge.
    unconverged: usize,
    /// Equilibria whose flow certificate was rejected (then solved by the fallback).
    uncertified: usize,
    /// Solves finished by the fallback integrator.
    fallback: usize,
}

impl Tally {
    fn add(&mut self, s: &BatchSteadyState) {
        for r in &s.records {
            self.unconverged += usize::from(!r.converged());
            self.uncertified += usize::from(r.flow_certified == Some(false));
            self.fallback += usize::from(r.fallback_from.is_some());
        }
    }
}

/// The meta-gradient `dL_out(phi*(theta))/dtheta` as `c`'s method estimates it on `free`'s
/// tasks, as a training step computes it, and what its solves did.
fn estimate(c: &Config, free: &CoupledSystem<'_, MetaSystem>) -> (Params, Tally) {
    let (phi0, records) = free_equilibrium(free, &c.solver);
    let mut tally = Tally::default();
    tally.add(records.as_ref().expect("the inner problem is solved"));
    let g = match c.method.name {
        Method::LcpDi => {
            let controller = c.controller_settings();
            let settings = c.variant(Method::LcpDi, controller);
            let eq = ControlledEquilibrium::find(&settings, None, free, &phi0).unwrap();
            tally.add(&eq.solve);
            let mut g = eq.update().unwrap();
            g.scale(-1.0 / controller.beta());
            g
        }
        Method::Imaml => {
            let meta = c.meta_settings();
            implicit_meta_gradient(free, &phi0, meta.cg_tolerance, meta.cg_max_iterations)
                .unwrap()
                .0
        }
        Method::Fomaml => first_order_meta_gradient(free, &phi0).unwrap(),
        m => panic!("not a meta-learning method: {}", m.name()),
    };
    (g, tally)
}

/// The exact implicit meta-gradient: phi* of the config's solve polished by Newton-Krylov to
/// 1e-12, then CG to 1e-12.
fn exact_gradient(c: &Config, free: &CoupledSystem<'_, MetaSystem>) -> Params {
    let (phi0, _) = free_equilibrium(free, &c.solver);
    let mut tight = c.solver.clone();
    tight.stop.atol = 1e-12;
    tight.stop.rtol = 1e-12;
    tight.newton_krylov.forcing = 1e-6;
    tight.accelerated.certify.enabled = false;
    let polished = solve_batch(free, &free.state_with_phi(&phi0).unwrap(), &tight);
    let mut tally = Tally::default();
    tally.add(&polished);
    assert_eq!(
        tally.unconverged + tally.fallback,
        0,
        "the polish converges"
    );
    let phi = free.phi(&polished.states);
    let shift = (&phi - &phi0).amax();
    assert!(
        shift < 1e-4,
        "the polish stays at the solver's phi* ({shift:e})"
    );
    let (g, report) = implicit_meta_gradient(free, &phi, 1e-12, 2000).unwrap();
    assert!(report.converged, "CG reaches 1e-12");
    g
}

fn relative_error(g: &Params, exact: &Params) -> f64 {
    let mut d = g.clone();
    d.axpy(-1.0, exact);
    d.norm() / exact.norm()
}

fn main() {
    let path = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/meta-sinusoid.toml"
    ));
    let base = Config::load(Some(path), &[]).expect("the meta config");
    assert_eq!(
        base.solver.stop.atol, SOLVER_TOLERANCE,
        "the config's tolerance"
    );
    let data = load_split(&base).expect("sinusoid tasks");
    let net = meta_system(&base).unwrap();
    let b = base.training.batch_size;
    let pool = thread_pool(1).unwrap();
    let systems: Vec<CoupledSystem<'_, MetaSystem>> = (0..BATCHES)
        .map(|k| {
            let (x, t) = data.train.batch(&(k * b..(k + 1) * b).collect::<Vec<_>>());
            CoupledSystem::new(&net, x, t, base.objective(b), base.dynamics.tau_v, None).unwrap()
        })
        .collect();
    let load_before = load_average();
    let exact: Vec<Params> =
        pool.install(|| systems.iter().map(|f| exact_gradient(&base, f)).collect());

    let mut setups = Vec::new();
    for certify in [false, true] {
        for (alpha, tolerances) in LCP_GRID {
            for &tol in tolerances {
                if !certify || (alpha <= CERTIFIED_ALPHA_ONCE && tol == SOLVER_TOLERANCE) {
                    let once = certify && alpha > CERTIFIED_ALPHA_MAX;
                    setups.push(setup(path, Method::LcpDi, alpha, tol, certify, once));
                }
            }
        }
        for cg in CG_TOLERANCES {
            setups.push(setup(
                path,
                Method::Imaml,
                cg,
                SOLVER_TOLERANCE,
                certify,
                false,
            ));
        }
        let s = setup(path, Method::Fomaml, 0.0, SOLVER_TOLERANCE, certify, false);
        setups.push(s);
    }
    let (cg, tol) = TIGHT_CG;
    setups.push(setup(path, Method::Imaml, cg, tol, false, false));

    let mut seconds = vec![Vec::new(); setups.len()];
    let mut errors = vec![0.0f64; setups.len()];
    let mut tallies = vec![Tally::default(); setups.len()];
    for round in 0..ROUNDS {
        for (k, s) in setups.iter().enumerate() {
            if s.once && round > 0 {
                continue;
            }
            let batches = if s.once { 1 } else { BATCHES };
            let start = Instant::now();
            let out: Vec<(Params, Tally)> = pool.install(|| {
                systems[..batches]
                    .iter()
                    .map(|f| estimate(&s.config, f))
                    .collect()
            });
            seconds[k].push(start.elapsed().as_secs_f64() / batches as f64);
            if round == 0 {
                for ((g, t), e) in out.iter().zip(&exact) {
                    errors[k] = errors[k].max(relative_error(g, e));
                    tallies[k].unconverged += t.unconverged;
                    tallies[k].uncertified += t.uncertified;
                    tallies[k].fallback += t.fallback;
                }
            }
            eprintln!(
                "round {round}, {} (certificate {}): {:.3} s per meta-batch, error {:.2e} (load {})",
                s.label,
                s.certify,
                seconds[k][round],
                errors[k],
                load_average()
            );
        }
    }
    let med: Vec<f64> = seconds.into_iter().map(median).collect();

    println!(
        "meta-gradient of {BATCHES} meta-batches of {b} sinusoid tasks at the initial theta, 1 thread, medians of {ROUNDS} rounds (load average {} at the start, {} at the end)",
        load_before,
        load_average()
    );
    println!("| configuration | certificate | s per meta-batch | relative error (max over meta-batches) | solves unconverged / uncertified / fallback |");
    println!("|---|---|---|---|---|");
    for (k, s) in setups.iter().enumerate() {
        let t = tallies[k];
        println!(
            "| {} | {} | {:.3}{} | {:.2e} | {} / {} / {} |",
            s.label,
            if s.certify { "on" } else { "off" },
            med[k],
            if s.once { " (once, 1 meta-batch)" } else { "" },
            errors[k],
            t.unconverged,
            t.uncertified,
            t.fallback
        );
    }
    println!();
    // Within a method the time hardly depends on its accuracy knob (the solves dominate), so
    // the cheapest configuration by its measured median would be picked by noise: each method
    // is represented by its first configuration in the grid's order (weakest alpha, loosest
    // tolerances) that reaches the level.
    let fomaml = |certify: bool| {
        let k = setups
            .iter()
            .position(|s| s.method == Method::Fomaml && s.certify == certify)
            .expect("fomaml is timed");
        med[k]
    };
    println!(
        "the first configuration in the grid's order (weakest alpha, loosest tolerances) that reaches each relative error; s per meta-batch, and over FOMAML's (the inner solves and the query gradient alone):"
    );
    println!("| error <= | certificate | lcp-di | imaml | lcp-di / imaml |");
    println!("|---|---|---|---|---|");
    for certify in [false, true] {
        for level in LEVELS {
            let first = |m: Method| {
                setups
                    .iter()
                    .enumerate()
                    .find(|(k, s)| s.method == m && s.certify == certify && errors[*k] <= level)
                    .map(|(k, s)| (med[k], s.label.clone()))
            };
            let show = |r: &Option<(f64, String)>| match r {
                Some((t, l)) => format!("{t:.3} ({:+.3}; {l})", t - fomaml(certify)),
                None => "not reached".into(),
            };
            let (l, i) = (first(Method::LcpDi), first(Method::Imaml));
            let ratio = match (&l, &i) {
                (Some((tl, _)), Some((ti, _))) => format!("{:.1}", tl / ti),
                _ => "-".into(),
            };
            println!(
                "| {level:.0e} | {} | {} | {} | {ratio} |",
                if certify { "on" } else { "off" },
                show(&l),
                show(&i)
            );
        }
    }
}
