//! The proof that the interface carries a second system: a quadratic-plus-log-cosh inner problem
//! of meta-learning (spec 7.1), written only against `lcsim::system`, runs through the
//! controlled system (control on every component), every solver, the plasticity rule, the
//! finite-difference check of spec 6.3, RBP and the training loop without touching them.
//!
//! ```text
//! f(phi, theta, x) = -grad L_in(phi) - lambda (phi - theta),
//! L_in(phi) = sum_i a_i log cosh(phi_i) + 1/2 phi^T A phi - x^T phi
//! J_f = -(diag(a sech^2 phi) + A + lambda I),   (d_theta f)^T psi = lambda psi
//! ```
//!
//! It implements no second-order term, so the controlled Jacobian's is a central difference.

use lcsim::config::{Config, Method};
use lcsim::control::LossScale;
use lcsim::control::{free_equilibrium, ControllerSettings, CoupledSystem, Objective};
use lcsim::data::{Dataset, Split};
use lcsim::learn::plasticity::{least_control_update, relaxed_energy};
use lcsim::learn::rbp::rbp_gradient;
use lcsim::numerics::rng::Rng;
use lcsim::solve::{solve_batch, SolverMethod, SolverSettings, VectorField};
use lcsim::system::loss::Loss;
use lcsim::system::params::Params;
use lcsim::system::{ControlEntry, EquilibriumSystem};
use lcsim::train::{train, Observer, TrainingState};
use nalgebra::DMatrix;
use std::ops::Range;
use std::sync::atomic::AtomicBool;

const N: usize = 4;

#[derive(Clone)]
struct InnerProblem {
    a: Vec<f64>,
    hessian: DMatrix<f64>,
    lambda: f64,
    /// theta (n x 1).
    params: Params,
}

impl InnerProblem {
    fn new(seed: u64) -> Self {
        let mut rng = Rng::seed_from_u64(seed);
        let m = DMatrix::from_fn(N, N, |_, _| rng.uniform_range(-0.5, 0.5));
        let theta = DMatrix::from_fn(N, 1, |_, _| rng.uniform_range(-0.3, 0.3));
        InnerProblem {
            a: (0..N).map(|i| 0.5 + 0.2 * i as f64).collect(),
            hessian: &m * m.transpose() + DMatrix::identity(N, N) * 0.2,
            lambda: 0.5,
            params: Params::new(vec![("theta".into(), theta)]),
        }
    }
}

/// The inner problem's linearisation: sech^2(phi) per entry.
struct Curvature(DMatrix<f64>);

impl EquilibriumSystem for InnerProblem {
    type Linearization = Curvature;
    fn state_dim(&self) -> usize {
        N
    }
    fn input_dim(&self) -> usize {
        N
    }
    fn loss_rows(&self) -> Range<usize> {
        0..N
    }
    fn control_entry(&self) -> ControlEntry {
        ControlEntry::Everywhere
    }
    fn params(&self) -> &Params {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }
    /// `x + lambda theta`.
    fn input_drive(&self, x: &DMatrix<f64>) -> DMatrix<f64> {
        let theta = self.params.tensor(0);
        DMatrix::from_fn(N, x.ncols(), |i, j| x[(i, j)] + self.lambda * theta[(i, 0)])
    }
    fn vector_field_driven(&self, phi: &DMatrix<f64>, drive: &DMatrix<f64>) -> DMatrix<f64> {
        let mut f = drive - &self.hessian * phi - phi * self.lambda;
        for j in 0..phi.ncols() {
            for i in 0..N {
                f[(i, j)] -= self.a[i] * phi[(i, j)].tanh();
            }
        }
        f
    }
    fn linearize(
        &self,
        phi: &DMatrix<f64>,
        _x: &DMatrix<f64>,
        _psi: Option<&DMatrix<f64>>,
    ) -> Curvature {
        Curvature(phi.map(|p| 1.0 / p.cosh().powi(2)))
    }
    fn jvp_at(&self, lin: &Curvature, dphi: &DMatrix<f64>) -> DMatrix<f64> {
        let mut out = -(&self.hessian * dphi) - dphi * self.lambda;
        for j in 0..dphi.ncols() {
            for i in 0..N {
                out[(i, j)] -= self.a[i] * lin.0[(i, j)] * dphi[(i, j)];
            }
        }
        out
    }
    /// J is symmetric.
    fn vjp_at(&self, lin: &Curvature, w: &DMatrix<f64>) -> DMatrix<f64> {
        self.jvp_at(lin, w)
    }
    fn param_vjp(&self, _phi: &DMatrix<f64>, _x: &DMatrix<f64>, psi: &DMatrix<f64>) -> Params {
        let sum = DMatrix::from_fn(N, 1, |i, _| self.lambda * psi.row(i).sum());
        Params::new(vec![("theta".into(), sum)])
    }
}

fn batch(b: usize, seed: u64) -> (DMatrix<f64>, DMatrix<f64>, Vec<usize>) {
    let mut rng = Rng::seed_from_u64(seed);
    let x = DMatrix::from_fn(N, b, |_, _| rng.uniform_range(-1.0, 1.0));
    let labels: Vec<usize> = (0..b).map(|j| j % N).collect();
    let t = lcsim::system::loss::one_hot(&labels, N);
    (x, t, labels)
}

/// Tight tolerances: Newton-Krylov reaches 1e-12; an integrator stalls near 1e-9, so the flow
/// is followed to 1e-8.
fn opts(method: SolverMethod) -> SolverSettings {
    let tol = if method.follows_flow() { 1e-8 } else { 1e-12 };
    let mut o = SolverSettings {
        method,
        ..SolverSettings::default()
    };
    o.stop.atol = tol;
    o.stop.rtol = tol;
    o.euler.dt = 0.2;
    o.stop.max_steps = 2_000_000;
    o.stop.max_time = 1e5;
    o
}

fn controller(alpha: f64) -> ControllerSettings {
    ControllerSettings {
        alpha,
        ..ControllerSettings::default()
    }
}

fn controlled<'m>(
    sys: &'m InnerProblem,
    x: &DMatrix<f64>,
    t: &DMatrix<f64>,
    alpha: f64,
) -> CoupledSystem<'m, InnerProblem> {
    let objective = Objective::new(Loss::SquaredError, LossScale::BatchMean, x.ncols());
    CoupledSystem::new(
        sys,
        x.clone(),
        t.clone(),
        objective,
        1.0,
        Some(controller(alpha)),
    )
    .unwrap()
}

/// The controlled equilibrium from phi0 by Newton-Krylov to 1e-12 (the flow's, as
/// `every_solver_finds_the_flow_equilibrium` checks).
fn controlled_equilibrium(c: &CoupledSystem<'_, InnerProblem>) -> DMatrix<f64> {
    controlled_equilibrium_to(c, 1e-12)
}

fn controlled_equilibrium_to(c: &CoupledSystem<'_, InnerProblem>, tol: f64) -> DMatrix<f64> {
    let newton = {
        let mut o = opts(SolverMethod::NewtonKrylov);
        o.stop.atol = tol;
        o.stop.rtol = tol;
        o
    };
    let (phi0, _) = free_equilibrium(&c.free(), &newton);
    let s = solve_batch(c, &c.state_with_phi(&phi0).unwrap(), &newton);
    assert!(s.records.iter().all(|r| r.converged()), "{:?}", s.records);
    s.states
}

#[test]
fn controlled_equilibrium_minimises_the_relaxed_energy() {
    let sys = InnerProblem::new(1);
    let (x, t, _) = batch(3, 2);
    let c = controlled(&sys, &x, &t, 0.3);
    let z = controlled_equilibrium(&c);
    let phi = c.phi(&z);
    let beta = controller(0.3).beta();
    // grad E_alpha = J^T f + beta grad L = 0 and psi* = -f(phi*).
    let f = sys.vector_field(&phi, &x);
    let grad = sys.vjp(&phi, &x, &f) + c.state_loss_gradient(&phi) * beta;
    assert!(grad.amax() < 1e-8, "grad E_alpha = {grad}");
    assert!((c.control(&z) + &f).amax() < 1e-8);
    // The control reaches every component.
    assert!(c.control(&z).iter().all(|v| v.abs() > 1e-6));
}

#[test]
fn every_solver_finds_the_flow_equilibrium() {
    let sys = InnerProblem::new(3);
    let (x, t, _) = batch(3, 4);
    let c = controlled(&sys, &x, &t, 0.5);
    let reference = controlled_equilibrium(&c);
    let (phi0, _) = free_equilibrium(&c.free(), &opts(SolverMethod::Tsit45));
    let z0 = c.state_with_phi(&phi0).unwrap();
    for method in SolverMethod::ALL {
        let s = solve_batch(&c, &z0, &opts(method));
        let err = (&s.states - &reference).amax();
        assert!(
            err < 1e-6,
            "{method:?}: {err} {:?}",
            s.records[0].termination
        );
        assert!(s.records.iter().all(|r| r.converged()), "{method:?}");
    }
}

#[test]
fn controlled_jacobian_matches_finite_differences() {
    let sys = InnerProblem::new(5);
    let (x, t, _) = batch(2, 6);
    let c = controlled(&sys, &x, &t, 0.4);
    let mut rng = Rng::seed_from_u64(7);
    let z = DMatrix::from_fn(c.dim(), 2, |_, _| rng.uniform_range(-0.5, 0.5));
    let dz = DMatrix::from_fn(c.dim(), 2, |_, _| rng.uniform_range(-1.0, 1.0));
    let h = 1e-6;
    let fd = (c.residual(&(&z + &dz * h)) - c.residual(&(&z - &dz * h))) / (2.0 * h);
    let exact = VectorField::residual_jvp(&c, &z, &dz);
    assert!(
        (&fd - &exact).amax() < 1e-6 * (1.0 + fd.amax()),
        "{fd} vs {exact}"
    );
}

/// `H_alpha(theta) = combine * sum_samples min_phi E_alpha` at the controlled equilibrium.
fn h_alpha(sys: &InnerProblem, x: &DMatrix<f64>, t: &DMatrix<f64>, alpha: f64) -> f64 {
    let c = controlled(sys, x, t, alpha);
    let phi = c.phi(&controlled_equilibrium(&c));
    let e = relaxed_energy(&c, &phi, controller(alpha).beta());
    c.objective().combine * e.iter().sum::<f64>()
}

#[test]
fn least_control_update_is_the_finite_difference_gradient_of_h_alpha() {
    let sys = InnerProblem::new(8);
    let (x, t, _) = batch(3, 9);
    let alpha = 0.3;
    let c = controlled(&sys, &x, &t, alpha);
    let update = least_control_update(&c, &controlled_equilibrium(&c));
    let step = 1e-5;
    for i in 0..N {
        let at = |d: f64| {
            let mut probe = sys.clone();
            probe.params_mut().tensor_mut(0)[(i, 0)] += d;
            h_alpha(&probe, &x, &t, alpha)
        };
        let fd = (at(step) - at(-step)) / (2.0 * step);
        let lcp = update.tensor(0)[(i, 0)];
        // Delta theta = -grad H_alpha (spec 2.1).
        assert!(
            (lcp + fd).abs() <= 1e-6 * (1.0 + fd.abs()),
            "theta_{i}: {lcp} vs {}",
            -fd
        );
    }
}

#[test]
fn weak_control_aligns_with_the_implicit_gradient() {
    let sys = InnerProblem::new(10);
    let (x, t, _) = batch(4, 11);
    let free = controlled(&sys, &x, &t, 1.0).free();
    let newton = opts(SolverMethod::NewtonKrylov);
    let (phi0, _) = free_equilibrium(&free, &newton);
    let (gradient, _) = rbp_gradient(&free, &phi0, &newton);
    // RBP equals finite differences of L(phi0(theta)) (spec 6.4, second part).
    let step = 1e-5;
    for i in 0..N {
        let at = |d: f64| {
            let mut probe = sys.clone();
            probe.params_mut().tensor_mut(0)[(i, 0)] += d;
            let f = controlled(&probe, &x, &t, 1.0).free();
            let (p, _) = free_equilibrium(&f, &newton);
            f.objective().combine * f.losses(&p).iter().sum::<f64>()
        };
        let fd = (at(step) - at(-step)) / (2.0 * step);
        let g = gradient.tensor(0)[(i, 0)];
        assert!(
            (g - fd).abs() <= 1e-6 * (1.0 + fd.abs()),
            "theta_{i}: {g} vs {fd}"
        );
    }
    let mut cosines = Vec::new();
    for alpha in [0.1, 10.0, 100.0] {
        let c = controlled(&sys, &x, &t, alpha);
        let update = least_control_update(&c, &controlled_equilibrium_to(&c, 1e-10));
        let mut minus_g = gradient.clone();
        minus_g.scale(-1.0);
        cosines.push(update.cosine(&minus_g));
    }
    assert!(cosines[2] > 0.999, "{cosines:?}");
    assert!(cosines[2] >= cosines[0] - 1e-12, "{cosines:?}");
}

struct Losses(Vec<f64>);
impl Observer<InnerProblem> for Losses {
    fn on_epoch(
        &mut self,
        _state: &TrainingState<InnerProblem>,
        m: &lcsim::io::metrics::EpochMetrics,
    ) -> lcsim::error::Result<()> {
        self.0.push(m.mean_h);
        Ok(())
    }
}

#[test]
fn the_training_loop_trains_the_second_system() {
    // Tasks whose query targets all lie at e_0: a theta exists that solves them all.
    let make = |seed| {
        let (x, _, _) = batch(32, seed);
        Dataset::new(x * 0.2, vec![0; 32], N, "inner-problem").unwrap()
    };
    let data = Split {
        train: make(20),
        test: make(21),
    };
    let mut config = Config::default();
    config.method.name = Method::LcpDi;
    config.method.loss = Loss::SquaredError;
    config.training.epochs = 6;
    config.training.batch_size = 8;
    config.training.learning_rate = 0.2;
    config.solver = opts(SolverMethod::Anderson);
    config.solver.stop.atol = 1e-9;
    config.solver.stop.rtol = 1e-9;
    let state = TrainingState::with_system(InnerProblem::new(12), &config, 4).unwrap();
    let mut seen = Losses(Vec::new());
    let (end, _) = train(&config, &data, state, &mut seen, &AtomicBool::new(false)).unwrap();
    let first = &end.history[0];
    let last = end.history.last().unwrap();
    assert_eq!(end.history.len(), 6);
    assert!(last.fraction_unconverged == 0.0);
    // Learning drives H and the loss of the free equilibrium down (spec 2).
    assert!(last.mean_h < 0.5 * first.mean_h, "{:?}", seen.0);
    assert!(
        last.test_loss < first.test_loss,
        "{} vs {}",
        last.test_loss,
        first.test_loss
    );
}
