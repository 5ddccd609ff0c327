//! `solver.precision = "f32"`: forward Euler of the free system, of LCP-DI and of RBP's
//! adjoint in single precision against the f64 iteration (same equilibria to the tolerance, iterates that are
//! f32 values), independent of the thread count, and the configurations it refuses.

mod common;

use common::{controller, inputs, labels, lcsim, rnn, stderr, system};
use lcsim::control::LossScale;
use lcsim::learn::rbp::rbp_gradient;
use lcsim::numerics::activation::Activation;
use lcsim::solve::{solve_batch, BatchSteadyState, Precision, SolverMethod, SolverSettings};
use lcsim::system::loss::Loss;
use nalgebra::DMatrix;

/// The reference iteration (Euler, dt = 1) at the default test `|r_i| <= 1e-6 + 1e-6 |z_i|`.
fn euler(precision: Precision) -> SolverSettings {
    let mut o = SolverSettings {
        method: SolverMethod::Euler,
        precision,
        ..SolverSettings::default()
    };
    o.euler.dt = 1.0;
    o.stop.max_steps = 3000;
    o.accelerated.chunk = 8;
    o
}

/// `max_i |a_i - b_i| / (1 + |b_i|)`.
fn relative_gap(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    a.zip_map(b, |a, b| (a - b).abs() / (1.0 + b.abs())).max()
}

fn all_converged(b: &BatchSteadyState, what: &str) {
    assert_eq!(
        b.fraction_converged(),
        1.0,
        "{what}: not every sample converged"
    );
}

/// Every entry is an f32 value: the iterates were single precision.
fn single_precision_values(m: &DMatrix<f64>) -> bool {
    m.iter().all(|&v| (v as f32) as f64 == v)
}

#[test]
fn single_precision_equilibria_match_double_precision() {
    let net = rnn(40, 64, 10, Activation::Tanh, 7);
    let (x, t) = (inputs(40, 20, 8), labels(10, 20));
    let mut ctrl = controller(0.1, 1.0, 0.0);
    ctrl.tau_u = 0.1;
    let controlled = system(
        &net,
        &x,
        &t,
        Loss::CrossEntropy,
        LossScale::BatchMean,
        Some(ctrl),
    );
    let free = controlled.free();
    let (double, single) = (euler(Precision::F64), euler(Precision::F32));

    let free64 = solve_batch(&free, &free.initial_state(), &double);
    let free32 = solve_batch(&free, &free.initial_state(), &single);
    all_converged(&free64, "free f64");
    all_converged(&free32, "free f32");
    assert!(single_precision_values(&free32.states));
    assert!(!single_precision_values(&free64.states));
    let gap = relative_gap(&free32.states, &free64.states);
    assert!(gap <= 2e-6, "free equilibria differ by {gap:e}");

    let phi0 = free.phi(&free64.states);
    let z0 = controlled.state_with_phi(&phi0).unwrap();
    let ctrl64 = solve_batch(&controlled, &z0, &double);
    let ctrl32 = solve_batch(&controlled, &z0, &single);
    all_converged(&ctrl64, "controlled f64");
    all_converged(&ctrl32, "controlled f32");
    assert!(single_precision_values(&ctrl32.states));
    let gap = relative_gap(&ctrl32.states, &ctrl64.states);
    assert!(gap <= 2e-6, "controlled equilibria differ by {gap:e}");
    // The control psi* (what the update reads) to the same precision, against its size.
    let (psi32, psi64) = (
        controlled.control(&ctrl32.states),
        controlled.control(&ctrl64.states),
    );
    let err = (&psi32 - &psi64).amax() / psi64.amax();
    assert!(err <= 1e-5, "psi* differs by {err:e} of its largest entry");
    // Each sample takes about the f64 number of steps.
    for (a, b) in ctrl32.records.iter().zip(&ctrl64.records) {
        assert!(
            a.steps.abs_diff(b.steps) <= 3,
            "{} vs {} steps",
            a.steps,
            b.steps
        );
    }
}

#[test]
fn single_precision_rbp_gradient_matches_double_precision() {
    let net = rnn(40, 64, 10, Activation::Tanh, 5);
    let (x, t) = (inputs(40, 20, 6), labels(10, 20));
    let free = system(&net, &x, &t, Loss::CrossEntropy, LossScale::BatchMean, None);
    let (double, single) = (euler(Precision::F64), euler(Precision::F32));
    let phi0 = free.phi(&solve_batch(&free, &free.initial_state(), &double).states);
    let (g64, adj64) = rbp_gradient(&free, &phi0, &double);
    let (g32, adj32) = rbp_gradient(&free, &phi0, &single);
    all_converged(&adj64, "adjoints f64");
    all_converged(&adj32, "adjoints f32");
    assert!(single_precision_values(&adj32.states));
    let gap = relative_gap(&adj32.states, &adj64.states);
    assert!(gap <= 2e-6, "adjoints differ by {gap:e}");
    for ((name, a), (_, b)) in g32.iter().zip(g64.iter()) {
        let err = (a - b).amax() / b.amax();
        assert!(
            err <= 1e-5,
            "{name}: gradients differ by {err:e} of the largest entry"
        );
    }
}

#[test]
fn single_precision_results_do_not_depend_on_the_thread_count() {
    let net = rnn(30, 48, 10, Activation::Tanh, 11);
    let (x, t) = (inputs(30, 24, 12), labels(10, 24));
    let controlled = system(
        &net,
        &x,
        &t,
        Loss::CrossEntropy,
        LossScale::BatchMean,
        Some(controller(0.1, 1.0, 0.0)),
    );
    let phi0 = DMatrix::from_fn(controlled.phi_rows().len(), 24, |i, j| {
        ((i + 3 * j) % 7) as f64 * 0.1
    });
    let z0 = controlled.state_with_phi(&phi0).unwrap();
    let solve = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| solve_batch(&controlled, &z0, &euler(Precision::F32)))
    };
    let (one, two) = (solve(1), solve(2));
    assert_eq!(one.states, two.states);
    let steps = |b: &BatchSteadyState| b.records.iter().map(|r| r.steps).collect::<Vec<_>>();
    assert_eq!(steps(&one), steps(&two));
}

#[test]
fn single_precision_refuses_what_it_cannot_do() {
    let mut tight = euler(Precision::F32);
    tight.stop.atol = 1e-8;
    let msg = tight.validate().unwrap_err().to_string();
    assert!(msg.contains("solver.atol") && msg.contains("f32"), "{msg}");
    let mut huge = euler(Precision::F32);
    huge.stop.divergence_bound = 1e20;
    let msg = huge.validate().unwrap_err().to_string();
    assert!(
        msg.contains("solver.divergence_bound") && msg.contains("f32"),
        "{msg}"
    );
    let mut anderson = euler(Precision::F32);
    anderson.method = SolverMethod::Anderson;
    let msg = anderson.validate().unwrap_err().to_string();
    assert!(
        msg.contains("solver.precision") && msg.contains("anderson"),
        "{msg}"
    );
    assert!(euler(Precision::F32).validate().is_ok());

    let refused = [
        (vec!["method.name=\"lcp-kp\""], "lcp-kp"),
        (vec!["method.equilibrium=\"branch\""], "branch"),
        (vec!["solver.method=\"tsit45\""], "tsit45"),
        (vec!["solver.atol=1e-7"], "solver.atol"),
    ];
    for (sets, what) in refused {
        let mut args = vec!["train", "--config", "experiments/lcp-di-rnn-fast.toml"];
        args.extend(["--set", "solver.precision=\"f32\""]);
        for s in &sets {
            args.extend(["--set", s]);
        }
        args.extend(["--set", "output.dir=\"/nonexistent/never-written\""]);
        let out = lcsim(&args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{sets:?} was accepted");
        assert!(err.contains(what) && err.contains("f32"), "{sets:?}: {err}");
    }
}
