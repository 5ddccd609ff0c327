//! The meta-learning system (spec 7.1) against independent computations: the learner's
//! gradient and Hessian-vector product against finite differences and symmetry, and the
//! inner problem through the controller: the LCP meta-update against finite differences of
//! H_alpha(theta), the implicit (RBP) meta-gradient against finite differences of
//! L_out(phi*(theta)), and their alignment as the control weakens (spec 6.4's analogue).
//! The systems, tasks and solves are those of `lcsim check --system meta`
//! (`lcsim::studies::check_meta`).

use lcsim::control::{free_equilibrium, ControllerSettings, CoupledSystem};
use lcsim::learn::meta_gradient::{
    conjugate_gradient, first_order_meta_gradient, implicit_meta_gradient,
};
use lcsim::learn::plasticity::least_control_update;
use lcsim::learn::rbp::rbp_gradient;
use lcsim::numerics::rng::Rng;
use lcsim::solve::SolverSettings;
use lcsim::studies::check_meta::{
    meta_controlled_equilibrium, meta_coupled, meta_h_alpha, meta_newton, random_matrix,
    random_meta_system, sinusoid_tasks,
};
use lcsim::system::learner::Mlp;
use lcsim::system::meta::MetaSystem;
use lcsim::system::EquilibriumSystem;
use nalgebra::{DMatrix, DVector};

fn random(rows: usize, cols: usize, scale: f64, rng: &mut Rng) -> DMatrix<f64> {
    random_matrix(rows, cols, scale, rng)
}

fn small_mlp() -> Mlp {
    Mlp::new(vec![1, 5, 4, 1]).unwrap()
}

fn points(p: usize, rng: &mut Rng) -> (DMatrix<f64>, DMatrix<f64>) {
    let x = random(1, p, 2.0, rng);
    let y = x.map(|v| 1.5 * (v + 0.3).sin());
    (x, y)
}

#[test]
fn learner_gradient_matches_finite_differences() {
    let mlp = small_mlp();
    let mut rng = Rng::seed_from_u64(1);
    let phi = random(mlp.num_params(), 1, 0.8, &mut rng);
    let (x, y) = points(7, &mut rng);
    let g = mlp.gradient(phi.as_slice(), &x, &y).unwrap();
    let h = 1e-6;
    for k in 0..mlp.num_params() {
        let at = |d: f64| {
            let mut p = phi.clone();
            p[k] += d;
            mlp.loss(p.as_slice(), &x, &y).unwrap()
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (g[k] - fd).abs() < 1e-7 * (1.0 + fd.abs()),
            "{k}: {} vs {fd}",
            g[k]
        );
    }
}

#[test]
fn learner_hvp_matches_finite_differences_of_the_gradient_and_is_symmetric() {
    let mlp = small_mlp();
    let mut rng = Rng::seed_from_u64(2);
    let n = mlp.num_params();
    let phi = random(n, 1, 0.8, &mut rng);
    let (x, y) = points(6, &mut rng);
    let v = random(n, 1, 1.0, &mut rng);
    let u = random(n, 1, 1.0, &mut rng);
    let hv = mlp.hvp(phi.as_slice(), &x, &y, v.as_slice()).unwrap();
    let h = 1e-5;
    let grad_at = |d: f64| mlp.gradient((&phi + &v * d).as_slice(), &x, &y).unwrap();
    let fd: DVector<f64> = (grad_at(h) - grad_at(-h)) / (2.0 * h);
    assert!(
        (&hv - &fd).amax() < 1e-7 * (1.0 + fd.amax()),
        "max error {}",
        (&hv - &fd).amax()
    );
    let hu = mlp.hvp(phi.as_slice(), &x, &y, u.as_slice()).unwrap();
    let (a, b) = (u.column(0).dot(&hv), v.column(0).dot(&hu));
    assert!((a - b).abs() < 1e-12 * (1.0 + a.abs()), "{a} vs {b}");
}

#[test]
fn bad_shapes_and_settings_are_errors_naming_the_field() {
    let mlp = small_mlp();
    let x = DMatrix::zeros(2, 3);
    let y = DMatrix::zeros(1, 3);
    let e = mlp.loss(&vec![0.0; mlp.num_params()], &x, &y).unwrap_err();
    assert!(e.to_string().contains("learner input"), "{e}");
    let theta = DMatrix::zeros(mlp.num_params(), 1);
    let e = MetaSystem::new(mlp.clone(), 0.0, 3, theta.clone()).unwrap_err();
    assert!(e.to_string().contains("meta.lambda"), "{e}");
    let e = MetaSystem::new(mlp, 1.0, 0, theta).unwrap_err();
    assert!(e.to_string().contains("meta.support"), "{e}");
}

/// b tasks of K = 4 support and 6 query points from sinusoids.
fn tasks(mlp: &Mlp, b: usize, seed: u64) -> (DMatrix<f64>, DMatrix<f64>) {
    sinusoid_tasks(mlp, b, 4, 6, seed)
}

fn system(seed: u64) -> MetaSystem {
    random_meta_system(&[1, 5, 4, 1], 2.0, 4, seed).unwrap()
}

fn newton(tol: f64) -> SolverSettings {
    meta_newton(tol, small_mlp().num_params())
}

fn controlled<'m>(
    sys: &'m MetaSystem,
    xs: &DMatrix<f64>,
    xq: &DMatrix<f64>,
    alpha: f64,
) -> CoupledSystem<'m, MetaSystem> {
    let settings = ControllerSettings {
        alpha,
        ..ControllerSettings::default()
    };
    meta_coupled(sys, xs, xq, 1.0, Some(settings)).unwrap()
}

/// The controlled equilibrium (the branch from the free one, refined; see the library).
fn controlled_equilibrium(c: &CoupledSystem<'_, MetaSystem>, tol: f64) -> DMatrix<f64> {
    meta_controlled_equilibrium(c, tol).unwrap()
}

fn h_alpha(sys: &MetaSystem, xs: &DMatrix<f64>, xq: &DMatrix<f64>, alpha: f64) -> f64 {
    let c = controlled(sys, xs, xq, alpha);
    meta_h_alpha(&c, &controlled_equilibrium(&c, 1e-10)).unwrap()
}

#[test]
fn free_equilibrium_is_the_regularised_inner_minimiser() {
    let sys = system(3);
    let (xs, xq) = tasks(sys.learner(), 2, 4);
    let c = controlled(&sys, &xs, &xq, 1.0);
    let (phi0, free) = free_equilibrium(&c.free(), &newton(1e-12));
    for r in free.unwrap().records {
        assert!(
            r.converged(),
            "{:?} {} {}",
            r.termination,
            r.residual,
            r.steps
        );
    }
    // grad L_in(phi*) + lambda (phi* - theta) = 0, and J_f = -(H + lambda I) is negative definite.
    let f = sys.vector_field(&phi0, &xs);
    assert!(f.amax() < 1e-9, "{}", f.amax());
    let mut rng = Rng::seed_from_u64(5);
    let v = random(sys.state_dim(), 2, 1.0, &mut rng);
    let jv = sys.jvp(&phi0, &xs, &v);
    for j in 0..2 {
        assert!(v.column(j).dot(&jv.column(j)) < 0.0);
    }
}

#[test]
fn least_control_meta_update_is_the_finite_difference_gradient_of_h_alpha() {
    let sys = system(6);
    let (xs, xq) = tasks(sys.learner(), 1, 7);
    let alpha = 0.5;
    let c = controlled(&sys, &xs, &xq, alpha);
    let update = least_control_update(&c, &controlled_equilibrium(&c, 1e-10));
    let step = 1e-5;
    let mut worst: f64 = 0.0;
    for k in 0..sys.state_dim() {
        let at = |d: f64| {
            let mut probe = sys.clone();
            probe.params_mut().tensor_mut(0)[(k, 0)] += d;
            h_alpha(&probe, &xs, &xq, alpha)
        };
        let fd = (at(step) - at(-step)) / (2.0 * step);
        let lcp = update.tensor(0)[(k, 0)];
        // Delta theta = -grad H_alpha.
        worst = worst.max((lcp + fd).abs() / (1.0 + fd.abs()));
    }
    assert!(worst <= 1e-6, "relative error {worst}");
}

#[test]
fn implicit_meta_gradient_matches_finite_differences_and_weak_control_aligns() {
    let sys = system(8);
    let (xs, xq) = tasks(sys.learner(), 1, 9);
    let free = controlled(&sys, &xs, &xq, 1.0).free();
    let (phi0, _) = free_equilibrium(&free, &newton(1e-12));
    let (gradient, adj) = rbp_gradient(&free, &phi0, &newton(1e-12));
    assert!(adj.records.iter().all(|r| r.converged()));
    let step = 1e-5;
    for k in 0..sys.state_dim() {
        let at = |d: f64| {
            let mut probe = sys.clone();
            probe.params_mut().tensor_mut(0)[(k, 0)] += d;
            let f = controlled(&probe, &xs, &xq, 1.0).free();
            let (p, _) = free_equilibrium(&f, &newton(1e-12));
            f.objective().combine * f.losses(&p).iter().sum::<f64>()
        };
        let fd = (at(step) - at(-step)) / (2.0 * step);
        let g = gradient.tensor(0)[(k, 0)];
        assert!(
            (g - fd).abs() <= 1e-6 * (1.0 + fd.abs()),
            "{k}: {g} vs {fd}"
        );
    }
    let mut minus_g = gradient.clone();
    minus_g.scale(-1.0);
    let cosines: Vec<f64> = [0.5, 10.0, 1000.0]
        .iter()
        .map(|&alpha| {
            let c = controlled(&sys, &xs, &xq, alpha);
            least_control_update(&c, &controlled_equilibrium(&c, 1e-10)).cosine(&minus_g)
        })
        .collect();
    assert!(cosines[2] > 0.999, "{cosines:?}");
    assert!(cosines[2] >= cosines[0] - 1e-12, "{cosines:?}");
}

#[test]
fn conjugate_gradient_solves_a_known_system() {
    let mut rng = Rng::seed_from_u64(12);
    let m = random(6, 6, 1.0, &mut rng);
    let a = &m * m.transpose() + DMatrix::identity(6, 6);
    let w_true = DVector::from_fn(6, |i, _| i as f64 - 2.0);
    let g = &a * &w_true;
    let (w, k, res) = conjugate_gradient(|v| &a * v, &g, 1e-13, 100);
    assert!(
        (w - w_true).amax() < 1e-10 && res <= 1e-13 && k <= 12,
        "{k} {res}"
    );
}

#[test]
fn implicit_maml_by_cg_equals_rbp_and_first_order_is_the_query_gradient() {
    let sys = system(13);
    let (xs, xq) = tasks(sys.learner(), 3, 14);
    let free = controlled(&sys, &xs, &xq, 1.0).free();
    let (phi0, _) = free_equilibrium(&free, &newton(1e-12));
    // RBP solves the adjoint system with a steady-state solver: an independent computation.
    let (rbp, _) = rbp_gradient(&free, &phi0, &newton(1e-12));
    let (cg, report) = implicit_meta_gradient(&free, &phi0, 1e-12, 500).unwrap();
    assert!(report.converged && report.max_iterations > 0, "{report:?}");
    let mut diff = cg.clone();
    diff.axpy(-1.0, &rbp);
    assert!(
        diff.norm() <= 1e-8 * rbp.norm(),
        "{} vs {}",
        diff.norm(),
        rbp.norm()
    );
    // A truncated CG is reported as such.
    let (_, short) = implicit_meta_gradient(&free, &phi0, 1e-12, 2).unwrap();
    assert!(!short.converged && short.max_iterations == 2);
    let fo = first_order_meta_gradient(&free, &phi0).unwrap();
    let g = free.loss_gradient(&phi0);
    for k in [0, 7, sys.state_dim() - 1] {
        let expected: f64 = g.row(k).sum() * free.objective().combine;
        assert!((fo.tensor(0)[(k, 0)] - expected).abs() < 1e-15);
    }
    assert!(
        fo.cosine(&rbp) < 0.9999,
        "first order differs from the implicit gradient"
    );
}
