//! Engine tests: the checks of spec section 6 (least-control.md) plus the Jacobian
//! products, the solvers' termination reporting, input validation, determinism and the
//! parameter interchange layout. Every expected value is computed independently in this
//! file (finite differences, dense linear algebra, hand-written iterations), never copied
//! from the library's own output.

use std::collections::BTreeMap;

use lcsim::control::relax;
use lcsim::control::{ControllerSettings, CoupledSystem, LossScale, Objective};
use lcsim::error::LcsimError;
use lcsim::learn::plasticity::least_control_update;
use lcsim::learn::rbp::rbp_gradient;
use lcsim::numerics::activation::Activation;
use lcsim::numerics::rng::Rng;
use lcsim::solve::{newton_polish, solve_steady_state, SolverMethod, SolverSettings, Termination};
use lcsim::studies::check::{run_checks, CheckReport, CheckSettings};
use lcsim::system::loss::{one_hot, Loss};
use lcsim::system::params::Params;
use lcsim::system::rate::{RateNetwork, Topology, B, C, D, D_BIAS, E, W};
use lcsim::system::EquilibriumSystem;
use nalgebra::DMatrix;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

type Sys<'a> = CoupledSystem<'a, RateNetwork>;

fn rnn(n_x: usize, n_h: usize, n_y: usize, act: Activation, seed: u64) -> RateNetwork {
    RateNetwork::new(n_x, Topology::Recurrent { hidden: n_h }, n_y, act, seed).unwrap()
}

/// A small recurrent net used by most tests: 3 inputs, 5 hidden, 2 outputs, tanh.
fn tiny_rnn() -> RateNetwork {
    rnn(3, 5, 2, Activation::Tanh, 11)
}

/// The layered net 3 -> [4, 3] -> 2 with tanh.
fn tiny_layered() -> RateNetwork {
    let topology = Topology::Layered { layers: vec![4, 3] };
    RateNetwork::new(3, topology, 2, Activation::Tanh, 5).unwrap()
}

/// Uniform entries in [lo, hi) from a seeded generator.
fn random_matrix(rows: usize, cols: usize, seed: u64, lo: f64, hi: f64) -> DMatrix<f64> {
    let mut rng = Rng::seed_from_u64(seed);
    DMatrix::from_fn(rows, cols, |_, _| rng.uniform_range(lo, hi))
}

/// Inputs in [0, 1), n_x x batch.
fn inputs(n_x: usize, batch: usize, seed: u64) -> DMatrix<f64> {
    random_matrix(n_x, batch, seed, 0.0, 1.0)
}

/// One-hot labels j % n_y for sample j.
fn labels(n_y: usize, batch: usize) -> DMatrix<f64> {
    one_hot(&(0..batch).map(|j| j % n_y).collect::<Vec<_>>(), n_y)
}

fn controller(alpha: f64, k_i: f64, k_p: f64) -> ControllerSettings {
    ControllerSettings {
        alpha,
        k_i,
        k_p,
        ..ControllerSettings::default()
    }
}

fn system<'a>(
    net: &'a RateNetwork,
    x: &DMatrix<f64>,
    t: &DMatrix<f64>,
    loss: Loss,
    scale: LossScale,
    ctrl: Option<ControllerSettings>,
) -> Sys<'a> {
    let objective = Objective::new(loss, scale, x.ncols());
    CoupledSystem::new(net, x.clone(), t.clone(), objective.clone(), 1.0, ctrl).unwrap()
}

/// Solver options with an absolute-only stopping rule `max |r| <= atol`.
fn opts(method: SolverMethod, atol: f64) -> SolverSettings {
    let mut o = SolverSettings {
        method,
        ..SolverSettings::default()
    };
    o.stop.atol = atol;
    o.stop.rtol = 0.0;
    o
}

/// Relaxes every sample (asserting convergence), then refines each column by Newton's
/// method to machine precision.
fn equilibrium(sys: &Sys<'_>) -> DMatrix<f64> {
    let relaxed = relax(sys, &opts(SolverMethod::Tsit45, 1e-8));
    assert_eq!(
        relaxed.fraction_converged(),
        1.0,
        "relaxation did not converge"
    );
    let mut z = relaxed.states.clone();
    for j in 0..z.ncols() {
        let sample = sys.sample(j);
        let col = newton_polish(&sample, &z.columns(j, 1).into_owned(), 30);
        let r = sample.residual(&col).amax();
        assert!(r <= 1e-12, "Newton left residual {r:e} in sample {j}");
        z.set_column(j, &col.column(0));
    }
    z
}

fn max_abs_diff(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shape mismatch");
    (a - b).amax()
}

/// `|a - b| / max(|a|, |b|)` in the Frobenius norm (0 when both are zero).
fn rel_diff(a: &DMatrix<f64>, b: &DMatrix<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shape mismatch");
    let den = a.norm().max(b.norm());
    if den == 0.0 {
        0.0
    } else {
        (a - b).norm() / den
    }
}

fn assert_close(a: f64, b: f64, rel_tol: f64, what: &str) {
    let den = a.abs().max(b.abs());
    assert!(
        (a - b).abs() <= rel_tol * den,
        "{what}: {a:e} vs {b:e} (rel. error {:e} > {rel_tol:e})",
        (a - b).abs() / den
    );
}

fn assert_matrix_close(a: &DMatrix<f64>, b: &DMatrix<f64>, rel_tol: f64, what: &str) {
    let e = rel_diff(a, b);
    assert!(
        e <= rel_tol,
        "{what}: rel. error {e:e} > {rel_tol:e}\n{a}\n{b}"
    );
}

fn params_bits(p: &Params) -> Vec<(String, Vec<u64>)> {
    p.iter()
        .map(|(n, m)| (n.to_string(), m.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

fn run_check_report(s: &CheckSettings) -> CheckReport {
    let report = run_checks(s).unwrap_or_else(|e| panic!("run_checks failed: {e}"));
    assert!(report.fd_rel_error_lcp_vs_h.is_finite());
    report
}

// ---------------------------------------------------------------------------------------
// Jacobian products (needed exactly by the implicit solvers and Newton refinement)
// ---------------------------------------------------------------------------------------

/// Compares `residual_jvp` with central differences of `residual`, block by block
/// (phi rows, integral-controller rows, hidden-control rows), in random directions at
/// a random (non-equilibrium) state.
fn check_residual_jvp(sys: &Sys<'_>, seed: u64, what: &str) {
    let z = random_matrix(sys.dim(), sys.batch(), seed, -1.5, 1.5);
    let h = 1e-6;
    for k in 0..3 {
        let dz = random_matrix(sys.dim(), sys.batch(), seed + 100 + k, -1.0, 1.0);
        let fd = (sys.residual(&(&z + &dz * h)) - sys.residual(&(&z - &dz * h))) / (2.0 * h);
        let jvp = sys.residual_jvp(&z, &dz);
        for (name, rows) in [
            ("phi", sys.phi_rows()),
            ("u_i", sys.integral_rows()),
            ("e", sys.control_rows()),
        ] {
            if rows.is_empty() {
                continue;
            }
            let a = jvp.rows_range(rows.clone()).into_owned();
            let b = fd.rows_range(rows).into_owned();
            assert!(b.norm() > 1e-3, "{what}/{name}: degenerate direction");
            assert_matrix_close(&a, &b, 1e-6, &format!("{what}: residual_jvp rows {name}"));
        }
    }
}

#[test]
fn residual_jvp_matches_finite_differences() {
    for act in [Activation::Tanh, Activation::Sigmoid] {
        let net = rnn(3, 5, 3, act, 21);
        let x = inputs(3, 3, 1);
        let labels = labels(3, 3);
        let targets = random_matrix(3, 3, 2, -1.0, 1.0);
        let name = act.name();
        // Controlled, cross-entropy, k_p > 0, batch-mean scaling (scale 1/3).
        let ce = system(
            &net,
            &x,
            &labels,
            Loss::CrossEntropy,
            LossScale::BatchMean,
            Some(controller(0.1, 1.0, 0.7)),
        );
        check_residual_jvp(&ce, 3, &format!("{name} controlled CE"));
        // Controlled, squared error, k_p > 0, per-sample scaling, non-unit time constants.
        let mut c = controller(0.5, 0.8, 0.3);
        c.tau_u = 2.0;
        c.tau_e = 0.5;
        let se = system(
            &net,
            &x,
            &targets,
            Loss::SquaredError,
            LossScale::PerSample,
            Some(c),
        );
        check_residual_jvp(&se, 4, &format!("{name} controlled SE"));
        // Free system.
        let free = system(
            &net,
            &x,
            &labels,
            Loss::CrossEntropy,
            LossScale::BatchMean,
            None,
        );
        check_residual_jvp(&free, 5, &format!("{name} free"));
    }
    // The layered net (masked W) through the same controlled path.
    let net = tiny_layered();
    let (x, t) = (inputs(3, 2, 6), labels(2, 2));
    let sys = system(
        &net,
        &x,
        &t,
        Loss::CrossEntropy,
        LossScale::BatchMean,
        Some(controller(0.1, 1.0, 0.5)),
    );
    check_residual_jvp(&sys, 7, "layered controlled CE");
}

#[test]
fn model_vjp_is_transpose_of_jvp() {
    for act in [Activation::Tanh, Activation::Sigmoid, Activation::Relu] {
        for net in [
            rnn(3, 6, 2, act, 31),
            RateNetwork::new(3, Topology::Layered { layers: vec![4, 3] }, 2, act, 32).unwrap(),
        ] {
            let n = net.state_dim();
            let x = inputs(3, 4, 33);
            let phi = random_matrix(n, 4, 34, -2.0, 2.0);
            let a = random_matrix(n, 4, 35, -1.0, 1.0);
            let b = random_matrix(n, 4, 36, -1.0, 1.0);
            let lhs = a.dot(&net.jvp(&phi, &x, &b));
            let rhs = net.vjp(&phi, &x, &a).dot(&b);
            assert!(lhs.abs() > 1e-3, "degenerate inner product");
            assert_close(
                lhs,
                rhs,
                1e-12,
                &format!("<a, J b> vs <J^T a, b> ({})", act.name()),
            );
        }
    }
}

#[test]
fn model_vjp_jvp_matches_finite_differences_of_vjp() {
    for act in [Activation::Tanh, Activation::Sigmoid] {
        let net = rnn(3, 6, 2, act, 41);
        let n = net.state_dim();
        let x = inputs(3, 3, 42);
        let phi = random_matrix(n, 3, 43, -1.5, 1.5);
        let w = random_matrix(n, 3, 44, -1.0, 1.0);
        let dphi = random_matrix(n, 3, 45, -1.0, 1.0);
        let h = 1e-6;
        let fd = (net.vjp(&(&phi + &dphi * h), &x, &w) - net.vjp(&(&phi - &dphi * h), &x, &w))
            / (2.0 * h);
        let exact = net
            .second_order_at(&net.linearize(&phi, &x, Some(&w)), &dphi)
            .unwrap();
        assert!(fd.norm() > 1e-3, "degenerate direction");
        assert_matrix_close(&exact, &fd, 1e-6, &format!("vjp_jvp ({})", act.name()));
    }
}

// ---------------------------------------------------------------------------------------
// Spec 6.1: free equilibrium
// ---------------------------------------------------------------------------------------

#[test]
fn spec_6_1_free_equilibrium_of_rnn_has_small_residual() {
    let net = rnn(4, 8, 3, Activation::Tanh, 51);
    let x = inputs(4, 3, 52);
    let free = system(
        &net,
        &x,
        &labels(3, 3),
        Loss::CrossEntropy,
        LossScale::BatchMean,
        None,
    );
    let atol = 1e-8;
    let relaxed = relax(&free, &opts(SolverMethod::Tsit45, atol));
    for (j, rec) in relaxed.records.iter().enumerate() {
        assert_eq!(rec.termination, Termination::Converged, "sample {j}");
    }
    // Residual recomputed from the model's vector field, not from the solver record.
    let f = net.vector_field(&relaxed.states, &x);
    assert!(f.amax() <= atol, "|f(phi0)| = {:e} > {atol:e}", f.amax());
    assert!(relaxed.states.amax() > 1e-2, "trivial equilibrium");
}

/// The forward pass of the [4, 3] layered net written out from its parameter blocks.
fn hand_forward_pass(net: &RateNetwork, x: &DMatrix<f64>) -> DMatrix<f64> {
    let p = net.params();
    let tanh = |m: DMatrix<f64>| m.map(f64::tanh);
    let add_col = |mut m: DMatrix<f64>, b: DMatrix<f64>| {
        for mut c in m.column_iter_mut() {
            c += b.column(0);
        }
        m
    };
    let e1 = p.tensor(E).rows(0, 4).into_owned();
    let c1 = p.tensor(C).rows(0, 4).into_owned();
    let w21 = p.tensor(W).view((4, 0), (3, 4)).into_owned();
    let b2 = p.tensor(B).rows(4, 3).into_owned();
    let d2 = p.tensor(D).columns(4, 3).into_owned();
    let v1 = add_col(&e1 * x, c1);
    let v2 = add_col(&w21 * tanh(v1.clone()), b2);
    let y = add_col(&d2 * tanh(v2.clone()), p.tensor(D_BIAS).clone());
    let mut phi = DMatrix::zeros(9, x.ncols());
    phi.rows_mut(0, 4).copy_from(&v1);
    phi.rows_mut(4, 3).copy_from(&v2);
    phi.rows_mut(7, 2).copy_from(&y);
    phi
}

#[test]
fn spec_6_1_layered_free_equilibrium_equals_forward_pass() {
    let net = tiny_layered();
    let x = inputs(3, 3, 61);
    let free = system(
        &net,
        &x,
        &labels(2, 3),
        Loss::CrossEntropy,
        LossScale::BatchMean,
        None,
    );
    let forward = net.forward_pass(&x);
    assert!(
        max_abs_diff(&forward, &hand_forward_pass(&net, &x)) <= 1e-15,
        "forward_pass differs from the hand-written sweep"
    );
    // Plain relaxation: within the solver tolerance (|J^-1| is O(1) for this net).
    let atol = 1e-8;
    let relaxed = relax(&free, &opts(SolverMethod::Tsit45, atol));
    assert_eq!(relaxed.fraction_converged(), 1.0);
    let d = max_abs_diff(&relaxed.states, &forward);
    assert!(d <= 10.0 * atol, "relaxed vs forward pass: {d:e}");
    // Newton-polished: machine precision.
    for j in 0..3 {
        let polished = newton_polish(
            &free.sample(j),
            &relaxed.states.columns(j, 1).into_owned(),
            20,
        );
        let d = max_abs_diff(&polished, &forward.columns(j, 1).into_owned());
        assert!(d <= 1e-12, "polished vs forward pass, sample {j}: {d:e}");
    }
    // The reference iteration (Euler, dt = 1) reaches it after one sweep per layer + output.
    let euler = {
        let mut o = opts(SolverMethod::Euler, 1e-12);
        o.euler.dt = 1.0;
        o
    };
    let swept = relax(&free, &euler);
    for rec in &swept.records {
        assert_eq!(rec.termination, Termination::Converged);
        assert!(
            rec.steps <= 3,
            "took {} Euler steps for 2 layers",
            rec.steps
        );
    }
    assert!(max_abs_diff(&swept.states, &forward) <= 1e-14);
}

// ---------------------------------------------------------------------------------------
// Spec 6.2: alpha -> 0 drives the output to the target
// ---------------------------------------------------------------------------------------

#[test]
fn spec_6_2_output_reaches_target_as_alpha_vanishes() {
    let net = rnn(3, 6, 2, Activation::Tanh, 71);
    let x = inputs(3, 2, 72);
    let t = DMatrix::from_row_slice(2, 2, &[0.5, -0.4, -0.3, 0.6]);
    let mut errors = Vec::new();
    for alpha in [1e-1, 1e-2, 1e-3, 1e-4] {
        let sys = system(
            &net,
            &x,
            &t,
            Loss::SquaredError,
            LossScale::PerSample,
            Some(controller(alpha, 1.0, 0.0)),
        );
        let z = equilibrium(&sys);
        let y = z.rows_range(sys.loss_rows()).into_owned();
        errors.push((&y - &t).norm() / t.norm());
    }
    assert!(
        errors[0] > 1e-3,
        "target already reached without control: {errors:?}"
    );
    // |y* - t| = O(alpha): each tenfold decrease of alpha shrinks the error at least 5x.
    for k in 1..errors.len() {
        assert!(
            errors[k] < 0.2 * errors[k - 1],
            "not decreasing like alpha: {errors:?}"
        );
    }
    assert!(
        errors[2] <= 2e-3 && errors[3] <= 1e-3,
        "|y* - t| / |t| too large at alpha = 1e-3, 1e-4: {errors:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Spec 6.3: the LCP-DI update is exactly -grad H_alpha
// ---------------------------------------------------------------------------------------

fn check_settings(
    topology: Topology,
    loss: Loss,
    loss_scale: LossScale,
    ctrl: ControllerSettings,
    seed: u64,
) -> CheckSettings {
    CheckSettings {
        topology,
        loss,
        loss_scale,
        controller: ctrl,
        seed,
        alphas: vec![ctrl.alpha],
        ..CheckSettings::default()
    }
}

#[test]
fn spec_6_3_lcp_update_equals_fd_gradient_of_h_alpha() {
    let rnn_top = Topology::Recurrent { hidden: 6 };
    let ff_top = Topology::Layered { layers: vec![4, 3] };
    let mut slow = controller(0.1, 1.0, 0.5);
    slow.tau_u = 2.0;
    slow.tau_e = 0.5;
    let cases = [
        check_settings(
            rnn_top.clone(),
            Loss::CrossEntropy,
            LossScale::BatchMean,
            controller(0.1, 1.0, 0.0),
            1,
        ),
        check_settings(
            rnn_top.clone(),
            Loss::SquaredError,
            LossScale::PerSample,
            controller(1.0, 1.0, 0.0),
            2,
        ),
        check_settings(
            ff_top.clone(),
            Loss::CrossEntropy,
            LossScale::BatchMean,
            controller(1.0, 1.0, 0.0),
            3,
        ),
        check_settings(
            ff_top,
            Loss::SquaredError,
            LossScale::PerSample,
            controller(0.1, 1.0, 0.0),
            4,
        ),
        // k_p > 0 changes beta to k_i / alpha + k_p; time constants must not matter.
        check_settings(rnn_top, Loss::CrossEntropy, LossScale::BatchMean, slow, 5),
    ];
    for s in &cases {
        let r = run_check_report(s);
        assert!(
            r.fd_rel_error_lcp_vs_h <= 1e-6,
            "{:?} {:?} {:?} alpha {}: fd_rel_error_lcp_vs_h = {:e} ({:?})",
            s.topology,
            s.loss,
            s.loss_scale,
            s.controller.alpha,
            r.fd_rel_error_lcp_vs_h,
            r.lcp_per_tensor
        );
        assert_eq!(r.lcp_per_tensor.len(), 6);
    }
}

/// `H_alpha(theta) = combine * sum_j min_phi [1/2 |f(phi)|^2 + beta * scale * L(y)]`,
/// with the minimiser found by relaxation + Newton and the energy and loss evaluated here.
fn hand_h_alpha(
    net: &RateNetwork,
    x: &DMatrix<f64>,
    t: &DMatrix<f64>,
    loss: Loss,
    loss_scale: LossScale,
    ctrl: ControllerSettings,
) -> f64 {
    let batch = x.ncols() as f64;
    let (scale, combine) = match loss_scale {
        LossScale::BatchMean => (1.0 / batch, 1.0),
        LossScale::PerSample => (1.0, 1.0 / batch),
    };
    let beta = ctrl.k_i / ctrl.alpha + ctrl.k_p;
    let sys = system(net, x, t, loss, loss_scale, Some(ctrl));
    let z = equilibrium(&sys);
    let phi = z.rows(0, net.state_dim()).into_owned();
    let f = net.vector_field(&phi, x);
    let n_h = net.n_h();
    let mut h = 0.0;
    for j in 0..x.ncols() {
        let y: Vec<f64> = (0..net.n_y()).map(|i| phi[(n_h + i, j)]).collect();
        let target: Vec<f64> = (0..net.n_y()).map(|i| t[(i, j)]).collect();
        let l = match loss {
            Loss::CrossEntropy => {
                let lse = y.iter().map(|v| v.exp()).sum::<f64>().ln();
                y.iter()
                    .zip(&target)
                    .map(|(yi, ti)| ti * (lse - yi))
                    .sum::<f64>()
            }
            Loss::SquaredError => {
                0.5 * y
                    .iter()
                    .zip(&target)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
            }
        };
        h += 0.5 * f.column(j).norm_squared() + beta * scale * l;
    }
    combine * h
}

#[test]
fn spec_6_3_hand_written_fd_of_h_alpha_for_single_parameters() {
    // (network, loss, loss scale, controller, parameter entries (tensor, row, column))
    type Case = (
        RateNetwork,
        Loss,
        LossScale,
        ControllerSettings,
        Vec<(usize, usize, usize)>,
    );
    let cases: [Case; 2] = [
        (
            tiny_rnn(),
            Loss::CrossEntropy,
            LossScale::BatchMean,
            controller(0.1, 1.0, 0.0),
            vec![(W, 0, 1), (E, 2, 0), (D, 1, 3)],
        ),
        (
            tiny_layered(),
            Loss::SquaredError,
            LossScale::PerSample,
            controller(0.5, 1.0, 0.2),
            vec![(W, 5, 2), (D_BIAS, 0, 0)],
        ),
    ];
    for (net, loss, scale, ctrl, entries) in cases {
        let x = inputs(3, 3, 81);
        let t = match loss {
            Loss::CrossEntropy => labels(2, 3),
            Loss::SquaredError => random_matrix(2, 3, 82, -1.0, 1.0),
        };
        let sys = system(&net, &x, &t, loss, scale, Some(ctrl));
        let update = least_control_update(&sys, &equilibrium(&sys));
        for (k, i, j) in entries {
            let h = 1e-5;
            let perturbed = |delta: f64| {
                let mut n = net.clone();
                n.params_mut().tensor_mut(k)[(i, j)] += delta;
                hand_h_alpha(&n, &x, &t, loss, scale, ctrl)
            };
            let fd = (perturbed(h) - perturbed(-h)) / (2.0 * h);
            let upd = update.tensor(k)[(i, j)];
            assert!(upd.abs() > 1e-4, "update entry too small to test: {upd:e}");
            assert_close(
                upd,
                -fd,
                1e-6,
                &format!("update[{k}][({i}, {j})] vs -dH_alpha/dtheta"),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Spec 6.4: RBP is the gradient of L(phi0); LCP aligns with -RBP for weak control
// ---------------------------------------------------------------------------------------

#[test]
fn spec_6_4_rbp_matches_fd_and_lcp_aligns_with_rbp() {
    let alphas = vec![1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3];
    let cases = [
        CheckSettings {
            alphas: alphas.clone(),
            ..CheckSettings::default()
        },
        CheckSettings {
            topology: Topology::Layered { layers: vec![4, 3] },
            loss: Loss::SquaredError,
            loss_scale: LossScale::PerSample,
            seed: 9,
            alphas,
            ..CheckSettings::default()
        },
    ];
    for s in &cases {
        let r = run_check_report(s);
        assert!(
            r.fd_rel_error_rbp_vs_l <= 1e-6,
            "fd_rel_error_rbp_vs_l = {:e}",
            r.fd_rel_error_rbp_vs_l
        );
        let c = &r.cosine_lcp_vs_rbp;
        assert_eq!(c.len(), s.alphas.len());
        for k in 1..c.len() {
            assert!(
                c[k] >= c[k - 1] - 1e-9,
                "cosine not rising with alpha: {c:?}"
            );
        }
        assert!(c[c.len() - 1] >= 0.999, "cosine at alpha = 1e3: {c:?}");
        assert!(c[0] < c[c.len() - 1], "cosine constant in alpha: {c:?}");
    }
}

#[test]
fn spec_6_4_rbp_adjoint_iteration_equals_dense_linear_solve() {
    let net = rnn(4, 7, 3, Activation::Tanh, 91);
    let batch = 3;
    let x = inputs(4, batch, 92);
    let t = labels(3, batch);
    let free = system(&net, &x, &t, Loss::CrossEntropy, LossScale::BatchMean, None);
    let phi0 = equilibrium(&free);
    // Library: adjoint relaxed by the reference iteration (Euler, dt = 1).
    let euler = {
        let mut o = opts(SolverMethod::Euler, 1e-13);
        o.euler.dt = 1.0;
        o
    };
    let (grad, adjoints) = rbp_gradient(&free, &phi0, &euler);
    assert_eq!(adjoints.fraction_converged(), 1.0);

    // Dense: g = (I - S' W^T)^{-1} S' D^T gy, gy = (softmax(y0) - t) / B.
    let p = net.params();
    let (n_h, n_y) = (net.n_h(), net.n_y());
    let mut expected: Vec<DMatrix<f64>> = p
        .iter()
        .map(|(_, m)| DMatrix::zeros(m.nrows(), m.ncols()))
        .collect();
    for j in 0..batch {
        let v0 = phi0.column(j).rows(0, n_h).into_owned();
        let y0 = phi0.column(j).rows(n_h, n_y).into_owned();
        let s = v0.map(f64::tanh);
        let sd = DMatrix::from_diagonal(&v0.map(|v| 1.0 - v.tanh().powi(2)));
        let ex = y0.map(f64::exp);
        let gy = (&ex / ex.sum() - t.column(j)) / batch as f64;
        let m = DMatrix::identity(n_h, n_h) - &sd * p.tensor(W).transpose();
        let g = m
            .lu()
            .solve(&(&sd * p.tensor(D).transpose() * &gy))
            .unwrap();
        let xj = x.column(j).into_owned();
        expected[W] += &g * s.transpose();
        expected[B] += &g;
        expected[E] += &g * xj.transpose();
        expected[C] += &g;
        expected[D] += &gy * s.transpose();
        expected[D_BIAS] += &gy;
    }
    for (k, (name, m)) in grad.iter().enumerate() {
        assert_matrix_close(m, &expected[k], 1e-9, &format!("RBP gradient {name}"));
    }
}

// ---------------------------------------------------------------------------------------
// Spec 6.5: Euler with dt = 1, tau = 1 reproduces the reference iterates
// ---------------------------------------------------------------------------------------

/// The reference fixed-point iteration of the LCP-DI system for one sample, in scalar
/// loops (simultaneous update from the old state). Returns the states
/// (v, y, u_i, e) after 0..=k iterations.
fn reference_iterates(
    net: &RateNetwork,
    x: &[f64],
    label: usize,
    scale: f64,
    c: &ControllerSettings,
    k: usize,
) -> Vec<Vec<f64>> {
    let p = net.params();
    let (w, b, en, cb, d, db) = (
        p.tensor(W),
        p.tensor(B),
        p.tensor(E),
        p.tensor(C),
        p.tensor(D),
        p.tensor(D_BIAS),
    );
    let (n_h, n_y, n_x) = (net.n_h(), net.n_y(), net.n_x());
    let (mut v, mut y, mut ui, mut e) = (
        vec![0.0; n_h],
        vec![0.0; n_y],
        vec![0.0; n_y],
        vec![0.0; n_h],
    );
    let pack = |v: &[f64], y: &[f64], ui: &[f64], e: &[f64]| [v, y, ui, e].concat();
    let mut out = vec![pack(&v, &y, &ui, &e)];
    for _ in 0..k {
        let s: Vec<f64> = v.iter().map(|a| a.tanh()).collect();
        let sd: Vec<f64> = v.iter().map(|a| 1.0 - a.tanh() * a.tanh()).collect();
        let z: f64 = y.iter().map(|a| a.exp()).sum();
        let g: Vec<f64> = (0..n_y)
            .map(|i| scale * (y[i].exp() / z - if i == label { 1.0 } else { 0.0 }))
            .collect();
        let u: Vec<f64> = (0..n_y).map(|i| c.k_i * ui[i] - c.k_p * g[i]).collect();
        let mut e_new = vec![0.0; n_h];
        let mut v_new = vec![0.0; n_h];
        for i in 0..n_h {
            let mut back = 0.0;
            for l in 0..n_h {
                back += w[(l, i)] * e[l];
            }
            for l in 0..n_y {
                back += d[(l, i)] * u[l];
            }
            e_new[i] = e[i] + (-e[i] + sd[i] * back);
            let mut f = b[i] + cb[i];
            for l in 0..n_h {
                f += w[(i, l)] * s[l];
            }
            for l in 0..n_x {
                f += en[(i, l)] * x[l];
            }
            v_new[i] = v[i] + (-v[i] + f + e[i]);
        }
        let mut y_new = vec![0.0; n_y];
        let mut ui_new = vec![0.0; n_y];
        for i in 0..n_y {
            let mut f = db[i];
            for l in 0..n_h {
                f += d[(i, l)] * s[l];
            }
            y_new[i] = y[i] + (-y[i] + f + u[i]);
            ui_new[i] = ui[i] + (-g[i] - c.alpha * ui[i]);
        }
        (v, y, ui, e) = (v_new, y_new, ui_new, e_new);
        out.push(pack(&v, &y, &ui, &e));
    }
    out
}

#[test]
fn spec_6_5_euler_dt1_reproduces_reference_iterates() {
    let net = rnn(2, 2, 2, Activation::Tanh, 101);
    let x = DMatrix::from_column_slice(2, 2, &[0.7, -0.4, 0.2, 0.9]);
    let t = labels(2, 2); // labels 0, 1
    let ctrl = controller(0.1, 1.0, 0.5);
    let sys = system(
        &net,
        &x,
        &t,
        Loss::CrossEntropy,
        LossScale::BatchMean,
        Some(ctrl),
    );
    let k = 5;
    let times: Vec<f64> = (0..=k).map(|i| i as f64).collect();
    let euler = {
        let mut o = opts(SolverMethod::Euler, 1e-8);
        o.euler.dt = 1.0;
        o
    };
    let capped = {
        let mut o = euler.clone();
        o.stop.max_steps = k;
        o
    };
    for j in 0..2 {
        let sample = sys.sample(j);
        let z0 = DMatrix::zeros(sample.dim(), 1);
        let reference = reference_iterates(&net, &[x[(0, j)], x[(1, j)]], j, 0.5, &ctrl, k);
        // Trajectory at t = 0..5.
        let rec = solve_steady_state(&sample, &z0, &euler, &times);
        let traj = rec.trajectory.expect("trajectory requested");
        assert_eq!(traj.times, times);
        assert_eq!(traj.states.ncols(), k + 1);
        for (i, r) in reference.iter().enumerate() {
            let expected = DMatrix::from_column_slice(r.len(), 1, r);
            let d = max_abs_diff(&traj.states.columns(i, 1).into_owned(), &expected);
            assert!(d <= 1e-13, "sample {j}, iterate {i}: diff {d:e}");
        }
        assert!(
            reference[k].iter().any(|v| v.abs() > 1e-2),
            "trivial iterates"
        );
        // Final state after exactly K steps.
        let rec = solve_steady_state(&sample, &z0, &capped, &[]);
        assert_eq!(rec.termination, Termination::MaxSteps);
        assert_eq!(rec.steps, k);
        let expected = DMatrix::from_column_slice(reference[k].len(), 1, &reference[k]);
        assert!(max_abs_diff(&rec.state, &expected) <= 1e-13);
    }
}

// ---------------------------------------------------------------------------------------
// Determinism
// ---------------------------------------------------------------------------------------

#[test]
fn same_seed_is_bit_identical_and_different_seed_differs() {
    let run = |seed: u64| {
        let net = rnn(3, 5, 2, Activation::Tanh, seed);
        let x = inputs(3, 2, 111);
        let sys = system(
            &net,
            &x,
            &labels(2, 2),
            Loss::CrossEntropy,
            LossScale::BatchMean,
            Some(controller(0.1, 1.0, 0.0)),
        );
        let z = relax(&sys, &SolverSettings::default()).states;
        let update = least_control_update(&sys, &z);
        (net.params().clone(), z, update)
    };
    let (p1, z1, u1) = run(7);
    let (p2, z2, u2) = run(7);
    assert_eq!(params_bits(&p1), params_bits(&p2));
    assert_eq!(
        z1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        z2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert_eq!(params_bits(&u1), params_bits(&u2));
    let (p3, _, _) = run(8);
    for ((name, a), (_, b)) in p1.iter().zip(p3.iter()) {
        assert_ne!(a, b, "tensor {name} equal for seeds 7 and 8");
    }
}

/// Spec 1.1: PyTorch Linear initialisation, uniform in (-1/sqrt(fan_in), 1/sqrt(fan_in)).
fn assert_uniform_bound(m: &DMatrix<f64>, fan_in: usize, what: &str) {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let max = m.amax();
    assert!(
        max < bound,
        "{what}: max |w| = {max} >= 1/sqrt({fan_in}) = {bound}"
    );
    if m.len() >= 30 {
        assert!(
            max > 0.8 * bound,
            "{what}: max |w| = {max} far below 1/sqrt({fan_in}) = {bound}"
        );
    }
}

#[test]
fn init_is_uniform_within_pytorch_bounds_rnn() {
    let net = rnn(7, 20, 10, Activation::Tanh, 121);
    let p = net.params();
    for (k, fan) in [(W, 20), (B, 20), (E, 7), (C, 7), (D, 20), (D_BIAS, 20)] {
        assert_uniform_bound(p.tensor(k), fan, &format!("rnn tensor {k}"));
    }
}

#[test]
fn init_is_uniform_within_pytorch_bounds_layered_unequal_layers() {
    let net = RateNetwork::new(
        7,
        Topology::Layered {
            layers: vec![4, 25, 6],
        },
        3,
        Activation::Tanh,
        122,
    )
    .unwrap();
    let p = net.params();
    assert_uniform_bound(&p.tensor(E).rows(0, 4).into_owned(), 7, "E");
    assert_uniform_bound(
        &p.tensor(W).view((4, 0), (25, 4)).into_owned(),
        4,
        "W1 (4 -> 25)",
    );
    assert_uniform_bound(&p.tensor(B).rows(4, 25).into_owned(), 4, "b1");
    assert_uniform_bound(
        &p.tensor(W).view((29, 4), (6, 25)).into_owned(),
        25,
        "W2 (25 -> 6)",
    );
    assert_uniform_bound(&p.tensor(B).rows(29, 6).into_owned(), 25, "b2");
    assert_uniform_bound(&p.tensor(D).columns(29, 6).into_owned(), 6, "D");
}

// ---------------------------------------------------------------------------------------
// Solvers: every method lands on the same equilibrium
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

/// Time constants: tau dz/dt = r, per block (tau_v for phi, tau_u for u_i, tau_e for e).
#[test]
fn time_constants_scale_each_block() {
    let net = tiny_rnn();
    let x = inputs(3, 1, 145);
    let t = labels(2, 1);
    let obj = Objective::new(Loss::CrossEntropy, LossScale::BatchMean, 1);
    let ctrl = ControllerSettings {
        tau_u: 2.0,
        tau_e: 4.0,
        ..controller(0.1, 1.0, 0.5)
    };
    let sys = CoupledSystem::new(&net, x.clone(), t.clone(), obj.clone(), 0.5, Some(ctrl)).unwrap();
    // One Euler step of 0.5 from zero, by hand: s(0) = 0, s'(0) = 1, softmax(0) = 1/2.
    let step = {
        let mut o = opts(SolverMethod::Euler, 1e-8);
        o.euler.dt = 0.5;
        o.stop.max_steps = 1;
        o
    };
    let z1 = solve_steady_state(&sys, &DMatrix::zeros(sys.dim(), 1), &step, &[]).state;
    let p = net.params();
    let g = t.map(|ti| 0.5 - ti); // grad_y L at y = 0 (scale 1)
    let u = &g * -ctrl.k_p;
    let v1 = (p.tensor(B) + p.tensor(C) + p.tensor(E) * &x) * (0.5 / 0.5);
    let y1 = (p.tensor(D_BIAS) + &u) * (0.5 / 0.5);
    let ui1 = &g * (-0.5 / 2.0);
    let e1 = p.tensor(D).transpose() * &u * (0.5 / 4.0);
    let expected = DMatrix::from_iterator(
        sys.dim(),
        1,
        v1.iter().chain(&y1).chain(&ui1).chain(&e1).copied(),
    );
    assert!(
        max_abs_diff(&z1, &expected) <= 1e-15,
        "first step:\n{z1}\n{expected}"
    );
    // Doubling every time constant doubles time: Euler dt = 2, tau = 2 follows the
    // iterates of dt = 1, tau = 1 exactly (division by 2 is exact).
    let slow_ctrl = ControllerSettings {
        tau_u: 2.0,
        tau_e: 2.0,
        ..ControllerSettings::default()
    };
    let fast = CoupledSystem::new(
        &net,
        x.clone(),
        t.clone(),
        obj.clone(),
        1.0,
        Some(ControllerSettings::default()),
    )
    .unwrap();
    let slow = CoupledSystem::new(&net, x, t, obj.clone(), 2.0, Some(slow_ctrl)).unwrap();
    let z0 = DMatrix::zeros(fast.dim(), 1);
    let run = |sys: &Sys<'_>, dt: f64| {
        let o = {
            let mut o = opts(SolverMethod::Euler, 1e-8);
            o.euler.dt = dt;
            o.stop.max_steps = 8;
            o
        };
        solve_steady_state(sys, &z0, &o, &[]).state
    };
    assert_eq!(run(&fast, 1.0), run(&slow, 2.0));
    // And the adaptive integrator: z_slow(2 t) = z_fast(t).
    let o = {
        let mut o = opts(SolverMethod::Tsit45, 1e-8);
        o.adaptive.atol = 1e-11;
        o.adaptive.rtol = 1e-10;
        o
    };
    let a = solve_steady_state(&fast, &z0, &o, &[0.0, 1.0, 3.0])
        .trajectory
        .unwrap();
    let b = solve_steady_state(&slow, &z0, &o, &[0.0, 2.0, 6.0])
        .trajectory
        .unwrap();
    let d = max_abs_diff(&a.states, &b.states);
    assert!(d <= 1e-7, "tau scaling: {d:e}");
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
        }
    }
}

// ---------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------

#[test]
fn bad_inputs_are_errors_naming_the_field() {
    let net = tiny_rnn();
    let x = inputs(3, 2, 161);
    let t = labels(2, 2);
    let obj = Objective::new(Loss::CrossEntropy, LossScale::BatchMean, 2);
    let ctrl = Some(ControllerSettings::default());

    let mut bad = x.clone();
    bad[(1, 0)] = f64::NAN;
    match CoupledSystem::new(&net, bad, t.clone(), obj.clone(), 1.0, ctrl) {
        Err(LcsimError::NonFinite {
            field,
            index,
            value,
        }) => {
            assert_eq!(field, "inputs");
            assert_eq!(index, 1);
            assert!(value.is_nan());
        }
        other => panic!("NaN input: expected NonFinite, got {other:?}"),
    }
    let mut bad_t = t.clone();
    bad_t[(0, 1)] = f64::INFINITY;
    assert!(matches!(
        CoupledSystem::new(&net, x.clone(), bad_t, obj.clone(), 1.0, ctrl),
        Err(LcsimError::NonFinite { ref field, .. }) if field == "targets"
    ));

    assert!(matches!(
        CoupledSystem::new(&net, inputs(4, 2, 162), t.clone(), obj.clone(), 1.0, ctrl),
        Err(LcsimError::Shape { ref field, .. }) if field == "inputs"
    ));
    assert!(matches!(
        CoupledSystem::new(&net, x.clone(), labels(2, 3), obj.clone(), 1.0, ctrl),
        Err(LcsimError::Shape { ref field, .. }) if field == "targets"
    ));

    let err = CoupledSystem::new(&net, x.clone(), t.clone(), obj.clone(), 0.0, ctrl).unwrap_err();
    assert!(matches!(err, LcsimError::InvalidValue { .. }), "{err:?}");
    assert!(err.to_string().contains("tau_v"), "{err}");

    let neg = Some(controller(-1.0, 1.0, 0.0));
    let err = CoupledSystem::new(&net, x.clone(), t.clone(), obj.clone(), 1.0, neg).unwrap_err();
    assert!(matches!(err, LcsimError::InvalidValue { .. }), "{err:?}");
    assert!(err.to_string().contains("alpha"), "{err}");

    assert!(CoupledSystem::new(&net, x, t, obj.clone(), 1.0, ctrl).is_ok());
}

#[test]
fn invalid_solver_options_are_rejected() {
    let with = |change: fn(&mut SolverSettings)| {
        let mut o = SolverSettings::default();
        change(&mut o);
        o
    };
    assert!(SolverSettings::default().validate().is_ok());
    let err = with(|o| o.stop.atol = 0.0).validate().unwrap_err();
    assert!(err.to_string().contains("atol"), "{err}");
    for bad in [
        with(|o| o.euler.dt = -1.0),
        with(|o| o.stop.max_steps = 0),
        with(|o| o.stop.max_time = f64::NAN),
        with(|o| o.stop.rtol = -1e-6),
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Parameter interchange layout (npz)
// ---------------------------------------------------------------------------------------

fn arrays_of(net: &RateNetwork) -> BTreeMap<String, DMatrix<f64>> {
    net.named_arrays().into_iter().collect()
}

#[test]
fn named_arrays_round_trip_exactly() {
    let nets = [
        (tiny_rnn(), false, vec!["W", "b", "E", "c", "D", "d"]),
        (tiny_layered(), true, vec!["E", "c", "W", "b", "D", "d"]),
        (
            RateNetwork::new(
                3,
                Topology::Layered {
                    layers: vec![4, 5, 2],
                },
                2,
                Activation::Sigmoid,
                171,
            )
            .unwrap(),
            true,
            vec!["E", "c", "W1", "b1", "W2", "b2", "D", "d"],
        ),
    ];
    for (net, layered, names) in nets {
        let named = net.named_arrays();
        assert_eq!(
            named.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            names
        );
        let back =
            RateNetwork::from_named_arrays(&arrays_of(&net), layered, net.activation()).unwrap();
        assert_eq!(back.topology(), net.topology());
        assert_eq!((back.n_x(), back.n_y()), (net.n_x(), net.n_y()));
        // Exact in value (masked entries may come back as +0.0 where the net holds -0.0).
        assert_eq!(back.params(), net.params());
    }
    // The layered blocks have the layer shapes.
    let a = arrays_of(&tiny_layered());
    assert_eq!(a["E"].shape(), (4, 3));
    assert_eq!(a["W"].shape(), (3, 4));
    assert_eq!(a["b"].shape(), (3, 1));
    assert_eq!(a["D"].shape(), (2, 3));
}

#[test]
fn params_file_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    for (net, layered) in [(tiny_rnn(), false), (tiny_layered(), true)] {
        let path = dir.path().join(if layered { "ff.npz" } else { "rnn.npz" });
        lcsim::io::interop::save_params(&path, &net).unwrap();
        let back = lcsim::io::interop::load_params(&path, layered, net.activation()).unwrap();
        assert_eq!(back.topology(), net.topology());
        // Exact in value (masked entries may come back as +0.0 where the net holds -0.0).
        assert_eq!(back.params(), net.params());
    }
}

/// Every array one row too many or too few, or one column too many (except E's columns,
/// which define n_x); returns the variants that `from_named_arrays` accepted.
fn misshapen_variants_accepted(net: &RateNetwork, layered: bool) -> Vec<String> {
    let full = arrays_of(net);
    let mut accepted = Vec::new();
    for name in full.keys() {
        let (r, c) = full[name].shape();
        for (rows, cols) in [(r + 1, c), (r - 1, c), (r, c + 1)] {
            if name == "E" && cols != c {
                continue;
            }
            let mut a = full.clone();
            a.insert(name.clone(), DMatrix::from_element(rows, cols, 0.1));
            if RateNetwork::from_named_arrays(&a, layered, Activation::Tanh).is_ok() {
                accepted.push(format!("{name}: {rows} x {cols} instead of {r} x {c}"));
            }
        }
    }
    accepted
}

#[test]
fn missing_or_misshapen_arrays_are_errors() {
    for (net, layered) in [(tiny_rnn(), false), (tiny_layered(), true)] {
        let full = arrays_of(&net);
        for name in full.keys() {
            let mut a = full.clone();
            a.remove(name);
            let r = RateNetwork::from_named_arrays(&a, layered, Activation::Tanh);
            assert!(r.is_err(), "layered = {layered}: missing {name} accepted");
            // (A layered set without W reads as a one-layer net and fails on D's shape.)
            if !layered || name != "W" {
                assert!(
                    matches!(r, Err(LcsimError::MissingArray { name: ref n, .. }) if n == name),
                    "layered = {layered}, missing {name}: {:?}",
                    r.err()
                );
            }
        }
    }
    let accepted = misshapen_variants_accepted(&tiny_rnn(), false);
    assert!(
        accepted.is_empty(),
        "recurrent: misshapen arrays accepted: {accepted:?}"
    );
    // A wrong number of rows in the recurrent W is a shape error naming W.
    let mut a = arrays_of(&tiny_rnn());
    a.insert("W".into(), DMatrix::zeros(4, 5));
    assert!(matches!(
        RateNetwork::from_named_arrays(&a, false, Activation::Tanh),
        Err(LcsimError::Shape { ref field, .. }) if field == "W"
    ));
    // Layered: a W block with the wrong number of columns, a D with too many columns.
    for (name, shape) in [("W", (3, 5)), ("D", (2, 4))] {
        let mut a = arrays_of(&tiny_layered());
        a.insert(name.into(), DMatrix::from_element(shape.0, shape.1, 0.1));
        let r = RateNetwork::from_named_arrays(&a, true, Activation::Tanh);
        assert!(
            matches!(r, Err(LcsimError::Shape { .. })),
            "layered {name} {shape:?}: {:?}",
            r.err()
        );
    }
}

#[test]
fn layered_arrays_of_wrong_shape_are_errors() {
    let accepted = misshapen_variants_accepted(&tiny_layered(), true);
    assert!(
        accepted.is_empty(),
        "layered: misshapen arrays accepted: {accepted:?}"
    );
}

#[test]
fn tanh_matches_libm_within_a_few_ulp() {
    let mut worst = 0.0f64;
    let mut check = |x: f64| {
        let (ours, libm) = (lcsim::numerics::activation::tanh(x), x.tanh());
        let rel = if libm == 0.0 {
            ours.abs()
        } else {
            ((ours - libm) / libm).abs()
        };
        worst = worst.max(rel);
        assert!(
            rel <= 4.0 * f64::EPSILON,
            "tanh({x:e}): {ours:e} vs {libm:e}"
        );
        assert_eq!(ours.is_sign_negative(), libm.is_sign_negative(), "{x}");
    };
    // Dense around the branch points 0.625 and 22, and log-spaced down to subnormals.
    for k in 0..=400_000 {
        check(-30.0 + 60.0 * k as f64 / 400_000.0);
    }
    for k in 0..2000 {
        let x = 0.625 + (k as f64 - 1000.0) * 1e-6;
        check(x);
        check(-x);
        check(22.0 + (k as f64 - 1000.0) * 1e-5);
    }
    for e in -320..3 {
        for m in [1.0, 2.5, 7.9] {
            check(m * 10f64.powi(e));
            check(-m * 10f64.powi(e));
        }
    }
    check(0.0);
    assert!(lcsim::numerics::activation::tanh(-0.0).is_sign_negative());
    assert_eq!(lcsim::numerics::activation::tanh(f64::INFINITY), 1.0);
    assert_eq!(lcsim::numerics::activation::tanh(f64::NEG_INFINITY), -1.0);
    assert!(lcsim::numerics::activation::tanh(f64::NAN).is_nan());
    assert!(
        worst > 0.0,
        "the comparison saw rounding differences at all"
    );
}
