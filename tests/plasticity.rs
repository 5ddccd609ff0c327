//! The learning rules at equilibrium (src/learn/plasticity.rs, src/learn/rbp.rs): the LCP-DI
//! update is exactly -grad H_alpha (spec 6.3), RBP is the gradient of L(phi0) and LCP aligns
//! with -RBP for weak control (spec 6.4). Expected values are computed independently here
//! (finite differences of a hand-written H_alpha, a dense linear solve), never copied from
//! the library's own output.

mod common;

use common::{
    assert_close, assert_matrix_close, controller, equilibrium, inputs, labels, opts,
    random_matrix, rnn, system, tiny_layered, tiny_rnn,
};
use lcsim::control::{ControllerSettings, LossScale};
use lcsim::learn::plasticity::least_control_update;
use lcsim::learn::rbp::rbp_gradient;
use lcsim::numerics::activation::Activation;
use lcsim::solve::SolverMethod;
use lcsim::studies::check::{run_checks, CheckSettings, SpecReport};
use lcsim::system::loss::Loss;
use lcsim::system::rate::{RateNetwork, Topology, B, C, D, D_BIAS, E, W};
use lcsim::system::EquilibriumSystem;
use nalgebra::DMatrix;

/// The spec-6 part of `lcsim check`'s report with settings `s` (it must run and give a
/// finite FD error).
fn run_check_report(s: &CheckSettings) -> SpecReport {
    let report = run_checks(s).unwrap_or_else(|e| panic!("run_checks failed: {e}"));
    assert!(report.spec.fd_rel_error_lcp_vs_h.is_finite());
    report.spec
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
