//! The steady-state solvers (src/solve/). The integrators (Euler, Tsit45, BDF, ESDIRK34,
//! TR-BDF2) land on the same equilibrium and follow the same trajectory, and report capped
//! steps or time and divergence. The accelerated solvers (Anderson, Newton-Krylov) land on the
//! equilibrium the ODE flow reaches, report an unstable equilibrium instead of accepting it
//! and hand it to the fallback integrator, stop diverging or capped samples with a reason,
//! and give bit-identical results at any thread count. Reference values come from the
//! diffsol integrators or from closed forms, never from the solver under test.

mod common;

use common::{
    controller, equilibrium, inputs, labels, max_abs_diff, opts, random_matrix, rnn, system,
    tiny_rnn,
};
use lcsim::control::relax;
use lcsim::control::{ControllerSettings, CoupledSystem, LossScale};
use lcsim::numerics::activation::Activation;
use lcsim::solve::{
    rightmost_ritz_values, solve_batch, solve_steady_state, solve_trajectories, Fallback,
    SolverMethod, SolverSettings, Termination, VectorField,
};
use lcsim::system::loss::Loss;
use lcsim::system::params::Params;
use lcsim::system::rate::{RateNetwork, Topology};
use nalgebra::DMatrix;

/// A recurrent tanh net n_x -> n_h -> n_y.
fn network(n_x: usize, n_h: usize, n_y: usize, seed: u64) -> RateNetwork {
    rnn(n_x, n_h, n_y, Activation::Tanh, seed)
}

/// Inputs in [0, 1) and labels j % n_y of a batch, per-sample loss scale.
fn batch_system(
    net: &RateNetwork,
    batch: usize,
    controller: Option<ControllerSettings>,
) -> CoupledSystem<'_, RateNetwork> {
    let x = inputs(net.n_x(), batch, 7);
    let t = labels(net.n_y(), batch);
    system(
        net,
        &x,
        &t,
        Loss::CrossEntropy,
        LossScale::PerSample,
        controller,
    )
}

fn options(method: SolverMethod) -> SolverSettings {
    {
        let mut o = SolverSettings {
            method,
            ..SolverSettings::default()
        };
        o.stop.atol = 1e-10;
        o.stop.rtol = 0.0;
        o.adaptive.rtol = 1e-11;
        o.adaptive.atol = 1e-13;
        o.accelerated.chunk = 3;
        o
    }
}

const ACCELERATED: [SolverMethod; 2] = [SolverMethod::Anderson, SolverMethod::NewtonKrylov];

#[test]
fn accelerated_solvers_land_on_the_equilibrium_the_flow_reaches() {
    let net = network(6, 12, 3, 3);
    let ctrl = ControllerSettings {
        alpha: 0.5,
        ..ControllerSettings::default()
    };
    let controlled = batch_system(&net, 7, Some(ctrl));
    let free = controlled.free();
    let flow_free = relax(&free, &options(SolverMethod::Tsit45));
    assert_eq!(flow_free.fraction_converged(), 1.0);
    let start = controlled
        .state_with_phi(&free.phi(&flow_free.states))
        .unwrap();
    let flow = solve_batch(&controlled, &start, &options(SolverMethod::Tsit45));
    assert_eq!(flow.fraction_converged(), 1.0);
    for method in ACCELERATED {
        for (what, sys, z0, reference) in [
            ("free", &free, free.initial_state(), &flow_free.states),
            ("controlled", &controlled, start.clone(), &flow.states),
        ] {
            let solved = solve_batch(sys, &z0, &options(method));
            for rec in &solved.records {
                assert_eq!(rec.termination, Termination::Converged, "{what} {method:?}");
                assert_eq!(rec.solver, method, "{what}: produced by the method itself");
                assert!(rec.fallback_from.is_none());
                assert!(rec.residual <= 1e-10);
                assert!(rec.jvp_evals > 0, "the stability check ran");
            }
            let diff = (&solved.states - reference).amax();
            assert!(diff < 1e-7, "{what} {method:?}: |z - z_flow| = {diff:e}");
        }
    }
}

/// The Hopf normal form `dx = mu x - y - x (x^2 + y^2)`, `dy = x + mu y - y (x^2 + y^2)`:
/// for mu > 0 the origin is an unstable focus (eigenvalues mu +- i) inside a stable limit
/// cycle of radius sqrt(mu), so the flow has no steady state; for mu < 0 the origin is stable.
struct Hopf {
    mu: f64,
    batch: usize,
}

impl VectorField for Hopf {
    fn dim(&self) -> usize {
        2
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn select_samples(&self, columns: &[usize]) -> Self {
        Hopf {
            mu: self.mu,
            batch: columns.len(),
        }
    }
    fn time_constants(&self) -> Vec<f64> {
        vec![1.0, 1.0]
    }
    fn residual(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        DMatrix::from_fn(2, z.ncols(), |i, j| {
            let (x, y) = (z[(0, j)], z[(1, j)]);
            let rho = x * x + y * y;
            if i == 0 {
                self.mu * x - y - x * rho
            } else {
                x + self.mu * y - y * rho
            }
        })
    }
    fn residual_jvp(&self, z: &DMatrix<f64>, dz: &DMatrix<f64>) -> DMatrix<f64> {
        DMatrix::from_fn(2, z.ncols(), |i, j| {
            let (x, y) = (z[(0, j)], z[(1, j)]);
            let (dx, dy) = (dz[(0, j)], dz[(1, j)]);
            let rho = x * x + y * y;
            if i == 0 {
                (self.mu - rho - 2.0 * x * x) * dx + (-1.0 - 2.0 * x * y) * dy
            } else {
                (1.0 - 2.0 * x * y) * dx + (self.mu - rho - 2.0 * y * y) * dy
            }
        })
    }
}

#[test]
fn an_unstable_equilibrium_is_reported_and_the_fallback_finds_no_steady_state() {
    let field = Hopf { mu: 0.2, batch: 2 };
    let z0 = DMatrix::from_column_slice(2, 2, &[0.05, 0.02, -0.03, 0.04]);
    for method in ACCELERATED {
        let no_fallback = {
            let mut o = options(method);
            o.accelerated.fallback = Fallback::None;
            o
        };
        let found = solve_batch(&field, &z0, &no_fallback);
        for rec in &found.records {
            let Termination::Unstable { max_real } = rec.termination else {
                panic!("{method:?}: {:?}", rec.termination);
            };
            // The Ritz values of the 2 x 2 Jacobian at the origin are its eigenvalues.
            assert!((max_real - 0.2).abs() < 1e-6, "{max_real}");
            assert!(rec.state.amax() < 1e-8, "it did find the origin");
        }
        let with_fallback = {
            let mut o = options(method);
            o.accelerated.fallback = Fallback::Tsit45;
            o.stop.max_time = 200.0;
            o
        };
        let followed = solve_batch(&field, &z0, &with_fallback);
        for rec in &followed.records {
            assert_eq!(rec.termination, Termination::MaxTime, "{method:?}");
            assert_eq!(rec.solver, SolverMethod::Tsit45);
            assert!(matches!(
                rec.fallback_from,
                Some(Termination::Unstable { .. })
            ));
            // The flow went to the limit cycle |z| = sqrt(mu).
            let radius = rec.state.norm();
            assert!((radius - 0.2f64.sqrt()).abs() < 1e-3, "radius {radius}");
        }
    }
    // With mu < 0 the same origin is stable and accepted.
    let stable = Hopf { mu: -0.2, batch: 2 };
    for method in ACCELERATED {
        let rec = &solve_batch(&stable, &z0, &options(method)).records[0];
        assert_eq!(rec.termination, Termination::Converged, "{method:?}");
        assert!(rec.fallback_from.is_none());
    }
}

#[test]
fn capped_samples_fall_back_to_the_integrator_and_say_so() {
    let net = network(4, 8, 2, 5);
    let controlled = batch_system(&net, 4, Some(ControllerSettings::default()));
    for method in ACCELERATED {
        let capped = {
            let mut o = options(method);
            o.accelerated.max_iterations = 1;
            o.accelerated.fallback = Fallback::None;
            o
        };
        let out = relax(&controlled, &capped);
        assert!(out
            .records
            .iter()
            .all(|r| r.termination == Termination::MaxSteps && r.solver == method));
        let rescued = relax(&controlled, &{
            let mut o = capped;
            o.accelerated.fallback = Fallback::Tsit45;
            o
        });
        let reference = relax(&controlled, &options(SolverMethod::Tsit45));
        for (r, reference) in rescued.records.iter().zip(&reference.records) {
            assert_eq!(r.termination, Termination::Converged);
            assert_eq!(r.solver, SolverMethod::Tsit45);
            assert_eq!(r.fallback_from, Some(Termination::MaxSteps));
            assert!(r.rhs_evals > reference.rhs_evals, "counts both attempts");
        }
        assert_eq!(rescued.states, reference.states, "re-solved from the start");
    }
}

/// `dz/dt = z`: every start away from 0 runs off to infinity.
struct Explosive;

impl VectorField for Explosive {
    fn dim(&self) -> usize {
        3
    }
    fn batch(&self) -> usize {
        1
    }
    fn select_samples(&self, _columns: &[usize]) -> Self {
        Explosive
    }
    fn time_constants(&self) -> Vec<f64> {
        vec![1.0; 3]
    }
    fn residual(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        z * 1.0 + DMatrix::from_element(3, z.ncols(), 1.0)
    }
    fn residual_jvp(&self, _z: &DMatrix<f64>, dz: &DMatrix<f64>) -> DMatrix<f64> {
        dz.clone()
    }
}

#[test]
fn a_repelling_equilibrium_is_never_accepted() {
    // r(z) = z + 1 has its only zero at z = -1, where J = I: the flow runs away from it.
    let z0 = DMatrix::from_element(3, 1, 0.5);
    for method in ACCELERATED {
        let opts = {
            let mut o = options(method);
            o.accelerated.fallback = Fallback::Euler;
            o.stop.max_time = 100.0;
            o
        };
        let rec = &solve_batch(&Explosive, &z0, &opts).records[0];
        assert!(matches!(
            rec.fallback_from,
            Some(Termination::Unstable { max_real }) if (max_real - 1.0).abs() < 1e-9
        ));
        assert_eq!(rec.termination, Termination::Diverged, "{method:?}");
    }
}

#[test]
fn ritz_values_of_a_known_spectrum() {
    // Block-diagonal A with eigenvalues -1, -2, ..., -6 and the pair 0.3 +- 2i.
    let n = 8;
    let mut a = DMatrix::zeros(n, n);
    for i in 0..6 {
        a[(i, i)] = -(i as f64 + 1.0);
    }
    a[(6, 6)] = 0.3;
    a[(7, 7)] = 0.3;
    a[(6, 7)] = 2.0;
    a[(7, 6)] = -2.0;
    let (full, calls) = rightmost_ritz_values(|v| &a * v, n, 2, n);
    assert!(calls <= n);
    for v in full {
        assert!((v - 0.3).abs() < 1e-10, "{v}");
    }
    let stable = a.map(|v| v) - DMatrix::identity(n, n);
    let (shifted, _) = rightmost_ritz_values(|v| &stable * v, n, 1, n);
    assert!((shifted[0] + 0.7).abs() < 1e-10);
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let net = network(5, 10, 3, 9);
    let controlled = batch_system(&net, 9, Some(ControllerSettings::default()));
    let z0 = controlled.initial_state();
    for method in [
        SolverMethod::Anderson,
        SolverMethod::NewtonKrylov,
        SolverMethod::Tsit45,
    ] {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| solve_batch(&controlled, &z0, &options(method)))
        };
        let (one, two, three) = (run(1), run(2), run(3));
        assert_eq!(one.states, two.states, "{method:?}");
        assert_eq!(one.states, three.states, "{method:?}");
        let steps = |b: &lcsim::solve::BatchSteadyState| {
            b.records.iter().map(|r| r.steps).collect::<Vec<_>>()
        };
        assert_eq!(steps(&one), steps(&two));
    }
}

#[test]
fn invalid_solver_options_name_the_key() {
    let bad = [
        (
            {
                let mut o = SolverSettings::default();
                o.anderson.damping = 0.0;
                o
            },
            "solver.anderson_damping",
        ),
        (
            {
                let mut o = SolverSettings::default();
                o.anderson.memory = 0;
                o
            },
            "solver.anderson_memory",
        ),
        (
            {
                let mut o = SolverSettings::default();
                o.newton_krylov.forcing = 1.0;
                o
            },
            "solver.newton_forcing",
        ),
        (
            {
                let mut o = SolverSettings::default();
                o.accelerated.chunk = 0;
                o
            },
            "solver.chunk",
        ),
    ];
    for (opts, key) in bad {
        let msg = opts.validate().unwrap_err().to_string();
        assert!(msg.contains(key), "{msg}");
    }
}

// ---------------------------------------------------------------------------------------
// The integrators: every method lands on the same equilibrium
// ---------------------------------------------------------------------------------------

#[test]
fn all_methods_reach_the_same_equilibrium() {
    let net = tiny_rnn();
    let x = inputs(3, 2, 131);
    let t = labels(2, 2);
    let ctrl = controller(0.1, 1.0, 0.0);
    let controlled = system(
        &net,
        &x,
        &t,
        Loss::CrossEntropy,
        LossScale::BatchMean,
        Some(ctrl),
    );
    let free = controlled.free();
    let atol = 1e-8;
    for (what, sys) in [("controlled", &controlled), ("free", &free)] {
        let exact = equilibrium(sys);
        let mut euler = opts(SolverMethod::Euler, atol);
        euler.euler.dt = 0.2;
        let reference = relax(sys, &euler);
        assert_eq!(reference.fraction_converged(), 1.0, "{what} Euler");
        assert!(max_abs_diff(&reference.states, &exact) <= 1e-5);
        for method in [
            SolverMethod::Tsit45,
            SolverMethod::Bdf,
            SolverMethod::Esdirk34,
            SolverMethod::TrBdf2,
        ] {
            let o = {
                let mut o = opts(method, atol);
                o.adaptive.atol = 1e-10;
                o.adaptive.rtol = 1e-8;
                o
            };
            let got = relax(sys, &o);
            for (j, rec) in got.records.iter().enumerate() {
                assert_eq!(
                    rec.termination,
                    Termination::Converged,
                    "{what} {} sample {j}",
                    method.name()
                );
                assert!(
                    rec.residual <= atol,
                    "{what} {}: residual {:e}",
                    method.name(),
                    rec.residual
                );
                let r = sys.sample(j).residual(&rec.state).amax();
                assert!(
                    r <= atol,
                    "{what} {}: recomputed residual {r:e}",
                    method.name()
                );
            }
            let d = max_abs_diff(&got.states, &reference.states);
            assert!(d <= 1e-5, "{what} {} vs Euler: {d:e}", method.name());
            let d = max_abs_diff(&got.states, &exact);
            assert!(d <= 1e-5, "{what} {} vs Newton: {d:e}", method.name());
        }
    }
}

#[test]
fn trajectories_at_output_times_agree_between_methods_and_start_at_z0() {
    let net = tiny_rnn();
    let x = inputs(3, 1, 141);
    let sys = system(
        &net,
        &x,
        &labels(2, 1),
        Loss::CrossEntropy,
        LossScale::BatchMean,
        Some(controller(0.1, 1.0, 0.0)),
    );
    let z0 = random_matrix(sys.dim(), 1, 142, -0.5, 0.5);
    let times = [0.0, 0.5, 1.0, 2.5, 7.0];
    let mut trajectories = Vec::new();
    // Euler last: every output time is a multiple of its step.
    let methods = [
        SolverMethod::Tsit45,
        SolverMethod::Bdf,
        SolverMethod::Esdirk34,
        SolverMethod::TrBdf2,
        SolverMethod::Euler,
    ];
    for method in methods {
        let mut o = {
            let mut o = opts(method, 1e-8);
            o.adaptive.atol = 1e-11;
            o.adaptive.rtol = 1e-10;
            o
        };
        o.euler.dt = 0.25;
        let rec = solve_steady_state(&sys, &z0, &o, &times);
        assert_eq!(rec.termination, Termination::Converged, "{}", method.name());
        assert!(
            rec.time >= 7.0,
            "{}: stopped before the last output time",
            method.name()
        );
        let traj = rec.trajectory.expect("trajectory requested");
        assert_eq!(traj.times, times.to_vec(), "{}", method.name());
        assert_eq!(traj.states.ncols(), times.len());
        assert_eq!(
            traj.states.column(0),
            z0.column(0),
            "{}: state at t = 0",
            method.name()
        );
        trajectories.push(traj.states);
    }
    // The adaptive integrators follow the same path (Euler dt = 0.25 only roughly).
    for (k, method) in methods.iter().enumerate().take(4).skip(1) {
        let d = max_abs_diff(&trajectories[0], &trajectories[k]);
        assert!(d <= 1e-6, "Tsit45 vs {} trajectory: {d:e}", method.name());
    }
    assert!(max_abs_diff(&trajectories[0], &trajectories[4]) <= 0.2);
    assert!(
        max_abs_diff(&trajectories[0].columns(1, 1).into_owned(), &z0) > 1e-2,
        "state did not move"
    );
}

// ---------------------------------------------------------------------------------------
// Termination reporting
// ---------------------------------------------------------------------------------------

#[test]
fn max_steps_and_max_time_are_reported() {
    let net = tiny_rnn();
    let x = inputs(3, 1, 151);
    let sys = system(
        &net,
        &x,
        &labels(2, 1),
        Loss::CrossEntropy,
        LossScale::BatchMean,
        Some(controller(0.1, 1.0, 0.0)),
    );
    let z0 = DMatrix::zeros(sys.dim(), 1);
    for method in SolverMethod::INTEGRATORS {
        let o = {
            let mut o = opts(method, 1e-10);
            o.stop.max_steps = 3;
            o
        };
        let rec = solve_steady_state(&sys, &z0, &o, &[]);
        assert_eq!(rec.termination, Termination::MaxSteps, "{}", method.name());
        assert_eq!(rec.steps, 3, "{}", method.name());
        assert!(!rec.converged());

        let o = {
            let mut o = opts(method, 1e-10);
            o.stop.max_time = 1e-3;
            o
        };
        let rec = solve_steady_state(&sys, &z0, &o, &[]);
        assert_eq!(rec.termination, Termination::MaxTime, "{}", method.name());
        assert!(
            rec.time >= 1e-3 * (1.0 - 1e-12),
            "{}: time {}",
            method.name(),
            rec.time
        );
        if method != SolverMethod::Euler {
            assert!(
                rec.time <= 1e-3 * (1.0 + 1e-9),
                "{}: overshot max_time: {}",
                method.name(),
                rec.time
            );
        }
    }
}

#[test]
fn euler_on_a_chunk_takes_each_samples_own_steps() {
    // solve_batch steps chunks of samples together; each sample must end exactly as its own
    // solve does (solve_steady_state integrates one sample alone): the same termination,
    // steps, time and residual evaluations, and the same state up to the rounding of batched
    // products.
    let net = network(4, 6, 3, 5);
    let controlled = batch_system(&net, 7, Some(controller(0.1, 1.0, 0.0)));
    let free = controlled.free();
    for (what, sys) in [("free", &free), ("controlled", &controlled)] {
        let z0 = DMatrix::from_fn(sys.dim(), sys.batch(), |i, j| {
            0.1 * ((i + 3 * j) % 5) as f64
        });
        for (cap, max_time) in [(100_000, 1e6), (40, 1e6), (100_000, 7.5)] {
            let mut o = options(SolverMethod::Euler);
            o.euler.dt = 0.5;
            o.stop.max_steps = cap;
            o.stop.max_time = max_time;
            let batch = solve_batch(sys, &z0, &o);
            for (j, rec) in batch.records.iter().enumerate() {
                let sample = sys.select_samples(&[j]);
                let alone = solve_steady_state(&sample, &z0.columns(j, 1).into_owned(), &o, &[]);
                let at = format!("{what}, sample {j}, cap {cap}, max_time {max_time}");
                assert_eq!(rec.termination, alone.termination, "{at}");
                assert_eq!(rec.steps, alone.steps, "{at}");
                assert_eq!(rec.rhs_evals, alone.rhs_evals, "{at}");
                assert_eq!(rec.time, alone.time, "{at}");
                let d = max_abs_diff(&rec.state, &alone.state);
                assert!(d <= 1e-12, "{at}: states differ by {d:e}");
            }
            let ends: Vec<_> = batch
                .records
                .iter()
                .map(|r| r.termination.clone())
                .collect();
            match (cap, max_time) {
                (40, _) => assert!(ends.contains(&Termination::MaxSteps), "{what}: {ends:?}"),
                (_, 7.5) => assert!(ends.contains(&Termination::MaxTime), "{what}: {ends:?}"),
                _ => assert!(
                    ends.iter().all(|t| *t == Termination::Converged),
                    "{ends:?}"
                ),
            }
        }
    }
}

#[test]
fn unstable_network_is_reported_as_diverged() {
    // W = 5 I with relu and positive drive: dv/dt = 4 v + c > 0 blows up.
    let n_h = 2;
    let params = Params::new(vec![
        ("W".into(), DMatrix::identity(n_h, n_h) * 5.0),
        ("b".into(), DMatrix::from_element(n_h, 1, 0.1)),
        ("E".into(), DMatrix::from_element(n_h, 1, 1.0)),
        ("c".into(), DMatrix::from_element(n_h, 1, 0.1)),
        ("D".into(), DMatrix::from_element(1, n_h, 0.5)),
        ("d".into(), DMatrix::zeros(1, 1)),
    ]);
    let net = RateNetwork::from_params(
        1,
        Topology::Recurrent { hidden: n_h },
        1,
        Activation::Relu,
        params,
    )
    .unwrap();
    let x = DMatrix::from_element(1, 1, 1.0);
    let t = DMatrix::from_element(1, 1, 0.0);
    let controlled = system(
        &net,
        &x,
        &t,
        Loss::SquaredError,
        LossScale::PerSample,
        Some(controller(0.1, 1.0, 0.0)),
    );
    let free = controlled.free();
    for (what, sys) in [("free", &free), ("controlled", &controlled)] {
        let z0 = DMatrix::zeros(sys.dim(), 1);
        for method in SolverMethod::ALL {
            let rec = solve_steady_state(sys, &z0, &opts(method, 1e-8), &[]);
            assert_eq!(
                rec.termination,
                Termination::Diverged,
                "{what} {}: {:?}",
                method.name(),
                rec.termination
            );
            assert!(!rec.converged());
            // The batched driver (Euler steps chunks there) reports it too.
            let batched = solve_batch(sys, &z0, &opts(method, 1e-8));
            assert_eq!(batched.records[0].termination, Termination::Diverged);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

#[test]
fn invalid_solver_options_are_rejected() {
    assert!(SolverSettings::default().validate().is_ok());
    let err = {
        let mut o = SolverSettings::default();
        o.stop.atol = 0.0;
        o
    }
    .validate()
    .unwrap_err();
    assert!(err.to_string().contains("atol"), "{err}");
    for bad in [
        {
            let mut o = SolverSettings::default();
            o.euler.dt = -1.0;
            o
        },
        {
            let mut o = SolverSettings::default();
            o.stop.max_steps = 0;
            o
        },
        {
            let mut o = SolverSettings::default();
            o.stop.max_time = f64::NAN;
            o
        },
        {
            let mut o = SolverSettings::default();
            o.stop.rtol = -1e-6;
            o
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

/// Per sample j: `dz/dt = [[-a_j, -w_j], [w_j, -a_j]] z`, a decaying rotation with the closed
/// form `z(t) = exp(-a_j t) R(w_j t) z(0)`; each column only sees its own rates.
struct Spiral {
    rates: Vec<(f64, f64)>,
}

impl VectorField for Spiral {
    fn dim(&self) -> usize {
        2
    }
    fn batch(&self) -> usize {
        self.rates.len()
    }
    fn select_samples(&self, columns: &[usize]) -> Self {
        Spiral {
            rates: columns.iter().map(|&j| self.rates[j]).collect(),
        }
    }
    fn time_constants(&self) -> Vec<f64> {
        vec![1.0, 1.0]
    }
    fn residual(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        DMatrix::from_fn(2, z.ncols(), |i, j| {
            let (a, w) = self.rates[j];
            let (x, y) = (z[(0, j)], z[(1, j)]);
            if i == 0 {
                -a * x - w * y
            } else {
                w * x - a * y
            }
        })
    }
    fn residual_jvp(&self, _z: &DMatrix<f64>, dz: &DMatrix<f64>) -> DMatrix<f64> {
        self.residual(dz)
    }
}

/// The batched Tsit45 of `solve_trajectories` follows each sample's closed form at the output
/// times (dense output between steps), with each sample's own step sizes: a batch takes, per
/// sample, exactly the steps and states of that sample solved alone.
#[test]
fn batched_tsit45_trajectories_follow_the_closed_form_of_each_sample() {
    let spiral = Spiral {
        rates: vec![(0.05, 0.3), (1.0, 5.0), (0.2, 1.0), (3.0, 0.0)],
    };
    let z0 = DMatrix::from_fn(2, 4, |i, j| if i == 0 { 1.0 + j as f64 } else { -0.5 });
    let times: Vec<f64> = (0..=40).map(|k| 0.25 * k as f64).collect();
    let mut o = options(SolverMethod::Tsit45);
    o.adaptive.rtol = 1e-9;
    o.adaptive.atol = 1e-12;
    o.stop.max_time = 10.0;
    o.accelerated.chunk = 4;
    let batch = solve_trajectories(&spiral, &z0, &o, &times);
    let mut steps = Vec::new();
    for (j, rec) in batch.records.iter().enumerate() {
        let (a, w) = spiral.rates[j];
        let traj = rec.trajectory.as_ref().expect("a trajectory");
        assert_eq!(traj.times, times, "sample {j}: every output time recorded");
        let mut worst = 0.0f64;
        for (k, &t) in times.iter().enumerate() {
            let (x0, y0) = (z0[(0, j)], z0[(1, j)]);
            let (c, s, g) = ((w * t).cos(), (w * t).sin(), (-a * t).exp());
            let exact = [g * (c * x0 - s * y0), g * (s * x0 + c * y0)];
            for (i, e) in exact.iter().enumerate() {
                worst = worst.max((traj.states[(i, k)] - e).abs());
            }
        }
        assert!(worst < 1e-7, "sample {j}: max deviation {worst:e}");
        assert_eq!(rec.time, 10.0, "sample {j} ends exactly at max_time");
        steps.push(rec.steps);
        // The same sample alone: the same steps and states.
        let alone = solve_trajectories(
            &spiral.select_samples(&[j]),
            &z0.columns(j, 1).into_owned(),
            &o,
            &times,
        );
        assert_eq!(alone.records[0].steps, rec.steps, "sample {j}");
        assert_eq!(
            alone.records[0].trajectory.as_ref().unwrap().states,
            traj.states
        );
    }
    // The fast sample needs more steps than the slow one: step sizes are per sample.
    assert!(steps[1] > 2 * steps[0], "steps per sample {steps:?}");
}

/// The batched Tsit45 agrees with diffsol's Tsit45 (solved sample by sample) on the controlled
/// rate net within the tolerances, with the same stopping outcome, at any thread count
/// (bit-identical).
#[test]
fn batched_tsit45_agrees_with_diffsols_tsit45_and_not_with_the_thread_count() {
    let net = network(5, 12, 3, 4);
    let controlled = batch_system(&net, 7, Some(ControllerSettings::default()));
    let z0 = controlled.initial_state();
    let times: Vec<f64> = (0..=30).map(|k| 0.5 * k as f64).collect();
    let mut o = options(SolverMethod::Tsit45);
    o.adaptive.rtol = 1e-10;
    o.adaptive.atol = 1e-12;
    o.stop.max_time = 15.0;
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| solve_trajectories(&controlled, &z0, &o, &times))
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.states, two.states);
    for (j, rec) in one.records.iter().enumerate() {
        let traj = &rec.trajectory.as_ref().unwrap().states;
        assert_eq!(traj, &two.records[j].trajectory.as_ref().unwrap().states);
        let sample = controlled.select_samples(&[j]);
        let start = z0.columns(j, 1).into_owned();
        let reference = solve_steady_state(&sample, &start, &o, &times);
        assert_eq!(rec.termination, reference.termination, "sample {j}");
        let diff = max_abs_diff(traj, &reference.trajectory.unwrap().states);
        assert!(diff < 1e-7, "sample {j}: |batched - diffsol| = {diff:e}");
        assert!(max_abs_diff(&rec.state, &reference.state) < 1e-7);
    }
    // The controller acted: the trajectories are not trivially equal.
    assert!(one.states.amax() > 1e-2);
}

/// The batched Tsit45 reports divergence, a step cap and an unreachable output time as the
/// per-sample integrators do.
#[test]
fn batched_tsit45_reports_divergence_and_caps() {
    let z0 = DMatrix::from_element(3, 2, 0.5);
    let mut o = options(SolverMethod::Tsit45);
    o.stop.max_time = 1e3;
    let blown = solve_trajectories(&Explosive, &z0.columns(0, 1).into_owned(), &o, &[]);
    assert_eq!(blown.records[0].termination, Termination::Diverged);
    let spiral = Spiral {
        rates: vec![(0.01, 1.0), (0.01, 1.0)],
    };
    let z0 = DMatrix::from_element(2, 2, 1.0);
    o.stop.max_steps = 5;
    let capped = solve_trajectories(&spiral, &z0, &o, &[0.0, 100.0]);
    for rec in &capped.records {
        assert_eq!(rec.termination, Termination::MaxSteps);
        assert_eq!(rec.steps, 5);
        assert_eq!(
            rec.trajectory.as_ref().unwrap().times,
            vec![0.0],
            "100 not reached"
        );
    }
}

/// `dz/dt = -a (z - c_j)`: forward Euler's iterates are `z_k = c + (1 - dt a)^k (z0 - c)`.
struct Relaxation {
    a: f64,
    targets: Vec<[f64; 2]>,
}

impl VectorField for Relaxation {
    fn dim(&self) -> usize {
        2
    }
    fn batch(&self) -> usize {
        self.targets.len()
    }
    fn select_samples(&self, columns: &[usize]) -> Self {
        Relaxation {
            a: self.a,
            targets: columns.iter().map(|&j| self.targets[j]).collect(),
        }
    }
    fn time_constants(&self) -> Vec<f64> {
        vec![1.0, 1.0]
    }
    fn residual(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        DMatrix::from_fn(2, z.ncols(), |i, j| {
            -self.a * (z[(i, j)] - self.targets[j][i])
        })
    }
    fn residual_jvp(&self, _z: &DMatrix<f64>, dz: &DMatrix<f64>) -> DMatrix<f64> {
        -dz * self.a
    }
}

/// `solver.stop_norm`: Euler stops at the first iterate of the closed form that passes the
/// chosen test, entrywise `|r_i| <= atol + rtol |z_i|` or whole-state
/// `||r||_2 <= atol + rtol ||z||_2` (with dt = 1 the reference's relative L2 change per step);
/// a component near zero holds the entrywise test back, not the L2 one.
#[test]
fn euler_stops_at_the_first_iterate_that_passes_the_chosen_norm() {
    use lcsim::solve::StopNorm;
    let (a, z0) = (0.3, [1.0, 0.0]);
    let field = Relaxation {
        a,
        targets: vec![[1e-3, 5.0], [2.0, -1.0]],
    };
    let start = DMatrix::from_fn(2, 2, |i, _| z0[i]);
    let iterate = |j: usize, dt: f64, k: i32| -> ([f64; 2], [f64; 2]) {
        let c = field.targets[j];
        let g = (1.0 - dt * a).powi(k);
        let z = [c[0] + g * (z0[0] - c[0]), c[1] + g * (z0[1] - c[1])];
        (z, [-a * (z[0] - c[0]), -a * (z[1] - c[1])])
    };
    let (atol, rtol) = (1e-12, 1e-4);
    let passes = |norm: StopNorm, (z, r): ([f64; 2], [f64; 2])| match norm {
        StopNorm::Entrywise => (0..2).all(|i| r[i].abs() <= atol + rtol * z[i].abs()),
        StopNorm::L2 => r[0].hypot(r[1]) <= atol + rtol * z[0].hypot(z[1]),
    };
    let mut steps = Vec::new();
    for norm in [StopNorm::Entrywise, StopNorm::L2] {
        for dt in [1.0, 0.5] {
            let mut o = options(SolverMethod::Euler);
            (o.euler.dt, o.stop.atol, o.stop.rtol, o.stop.norm) = (dt, atol, rtol, norm);
            let batch = solve_batch(&field, &start, &o);
            for (j, rec) in batch.records.iter().enumerate() {
                let at = format!("{norm:?}, dt {dt}, sample {j}");
                assert_eq!(rec.termination, Termination::Converged, "{at}");
                let k = rec.steps as i32;
                let first = (0..).find(|&k| passes(norm, iterate(j, dt, k))).unwrap();
                assert_eq!(
                    k, first,
                    "{at}: stopped at iterate {k}, the first passing is {first}"
                );
                let (z, _) = iterate(j, dt, k);
                let d = (rec.state[0] - z[0]).abs().max((rec.state[1] - z[1]).abs());
                assert!(
                    d <= 1e-12,
                    "{at}: state {} off the closed form by {d:e}",
                    rec.state
                );
            }
            steps.push(batch.records[0].steps);
        }
    }
    // Sample 0 settles towards (1e-3, 5): its small component needs more steps entrywise.
    assert!(steps[2] < steps[0] && steps[3] < steps[1], "{steps:?}");
}
