//! The accelerated equilibrium solvers (Anderson, Newton-Krylov): they land on the
//! equilibrium the ODE flow reaches, report an unstable equilibrium instead of accepting it
//! and hand it to the fallback integrator, stop diverging or capped samples with a reason,
//! and give bit-identical results at any thread count. Reference values come from the
//! diffsol integrators or from closed forms, never from the solver under test.

use lcsim::control::relax;
use lcsim::control::{ControllerSettings, CoupledSystem, LossScale, Objective};
use lcsim::numerics::activation::Activation;
use lcsim::numerics::rng::Rng;
use lcsim::solve::{
    rightmost_ritz_values, solve_batch, Fallback, SolverMethod, SolverSettings, Termination,
    VectorField,
};
use lcsim::system::loss::{one_hot, Loss};
use lcsim::system::rate::{RateNetwork, Topology};
use nalgebra::DMatrix;

fn network(n_x: usize, n_h: usize, n_y: usize, seed: u64) -> RateNetwork {
    RateNetwork::new(
        n_x,
        Topology::Recurrent { hidden: n_h },
        n_y,
        Activation::Tanh,
        seed,
    )
    .unwrap()
}

fn batch_system(
    net: &RateNetwork,
    batch: usize,
    controller: Option<ControllerSettings>,
) -> CoupledSystem<'_, RateNetwork> {
    let mut rng = Rng::seed_from_u64(7);
    let x = DMatrix::from_fn(net.n_x(), batch, |_, _| rng.uniform_range(0.0, 1.0));
    let labels: Vec<usize> = (0..batch).map(|j| j % net.n_y()).collect();
    let objective = Objective::new(Loss::CrossEntropy, LossScale::PerSample, batch);
    CoupledSystem::new(
        net,
        x,
        one_hot(&labels, net.n_y()),
        objective.clone(),
        1.0,
        controller,
    )
    .unwrap()
}

fn options(method: SolverMethod) -> SolverSettings {
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
    let with = |change: fn(&mut SolverSettings)| {
        let mut o = SolverSettings::default();
        change(&mut o);
        o
    };
    let bad = [
        (
            with(|o| o.anderson.damping = 0.0),
            "solver.anderson_damping",
        ),
        (with(|o| o.anderson.memory = 0), "solver.anderson_memory"),
        (
            with(|o| o.newton_krylov.forcing = 1.0),
            "solver.newton_forcing",
        ),
        (with(|o| o.accelerated.chunk = 0), "solver.chunk"),
    ];
    for (opts, key) in bad {
        let msg = opts.validate().unwrap_err().to_string();
        assert!(msg.contains(key), "{msg}");
    }
}
