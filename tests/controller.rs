//! The coupled system (src/control/): a rate network with its PI controller and dynamic
//! inversion as one vector field. Its Jacobian product against finite differences, the free
//! equilibrium (spec 6.1), the output driven to the target as alpha -> 0 (spec 6.2), the
//! reference iterates of Euler with dt = 1 (spec 6.5), the time constants of each block and
//! bad input. Every expected value is computed independently here (finite differences, a
//! hand-written forward pass and iteration), never copied from the library's own output.

mod common;

use common::{
    assert_matrix_close, controller, equilibrium, inputs, labels, max_abs_diff, opts,
    random_matrix, rnn, system, tiny_layered, tiny_rnn, Sys,
};
use lcsim::control::relax;
use lcsim::control::{ControllerSettings, CoupledSystem, LossScale, Objective};
use lcsim::error::LcsimError;
use lcsim::numerics::activation::Activation;
use lcsim::solve::{newton_polish, solve_steady_state, SolverMethod, Termination};
use lcsim::system::loss::Loss;
use lcsim::system::rate::{RateNetwork, B, C, D, D_BIAS, E, W};
use lcsim::system::EquilibriumSystem;
use nalgebra::DMatrix;

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
// Time constants
// ---------------------------------------------------------------------------------------

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
