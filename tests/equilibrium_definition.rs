//! Which controlled equilibrium (spec 2.2), on rate networks small enough for independent
//! references: the branch equilibrium (continuation in the control strength) against a
//! fine-step continuation written here from the closed form of `grad E_alpha`, folds where
//! that reference folds, the flow equilibrium against the Tsit45 flow (basin switching), the
//! flow certificate rejecting an accelerated solver's third answer, weak control (branch ==
//! flow, update -> the RBP gradient) and the envelope theorem at the branch equilibrium.
//!
//! The bistable unit (n_x = n_h = n_y = 1, tanh, W = 2): `f_v = -v + 2 tanh v + x`,
//! `f_y = -y + tanh v`; every |x| < 0.3 has two stable free equilibria (v near +-1.9). With
//! squared error `L = 1/2 (y - t)^2` (per-sample scale), the LCP-DI controlled equilibria at
//! strength lambda are the stationary points of `E = 1/2 (f_v^2 + f_y^2) + lambda beta L`.

mod common;

use common::{controller, system, tiny_rnn};
use lcsim::config::Config;
use lcsim::control::branch::{branch_equilibrium, BranchSettings};
use lcsim::control::{free_equilibrium, CoupledSystem, LossScale};
use lcsim::learn::plasticity::{least_control_update, relaxed_energy};
use lcsim::learn::rbp::rbp_gradient;
use lcsim::numerics::activation::Activation;
use lcsim::solve::{solve_batch, Fallback, SolverMethod, SolverSettings, Termination};
use lcsim::system::loss::Loss;
use lcsim::system::rate::{RateNetwork, Topology};
use lcsim::system::EquilibriumSystem;
use nalgebra::{DMatrix, Matrix2, Vector2};

/// A rate network 1 -> n_h -> 1 with W, b, E, c, D, d as given (row-major).
fn net(n_h: usize, tensors: [&[f64]; 6]) -> RateNetwork {
    let mut net = RateNetwork::new(
        1,
        Topology::Recurrent { hidden: n_h },
        1,
        Activation::Tanh,
        1,
    )
    .expect("a valid net");
    for (i, values) in tensors.iter().enumerate() {
        let t = net.params_mut().tensor_mut(i);
        let m = DMatrix::from_row_slice(t.nrows(), t.ncols(), values);
        t.copy_from(&m);
    }
    net
}

/// The bistable unit.
fn bistable() -> RateNetwork {
    net(1, [&[2.0], &[0.0], &[1.0], &[0.0], &[1.0], &[0.0]])
}

fn tight(method: SolverMethod) -> SolverSettings {
    let mut s = SolverSettings {
        method,
        ..SolverSettings::default()
    };
    s.stop.atol = 1e-10;
    s.stop.rtol = 1e-10;
    s.stop.max_time = 1e4;
    s.stop.max_steps = 200_000;
    s.adaptive.rtol = 1e-11;
    s.adaptive.atol = 1e-13;
    s
}

/// The controlled system of inputs `xs`, target `t` each, squared error per sample.
fn controlled<'m>(
    net: &'m RateNetwork,
    xs: &[f64],
    t: f64,
    alpha: f64,
    k_i: f64,
) -> CoupledSystem<'m, RateNetwork> {
    let x = DMatrix::from_row_slice(1, xs.len(), xs);
    let targets = DMatrix::from_element(1, xs.len(), t);
    let c = Some(controller(alpha, k_i, 0.0));
    system(
        net,
        &x,
        &targets,
        Loss::SquaredError,
        LossScale::PerSample,
        c,
    )
}

/// The free equilibria in the lower well (from v = -2, y = -1), by Newton-Krylov.
fn lower_free_equilibrium(c: &CoupledSystem<'_, RateNetwork>) -> DMatrix<f64> {
    let n = c.model().state_dim();
    let start = DMatrix::from_fn(n, c.batch(), |i, _| if i + 1 < n { -2.0 } else { -1.0 });
    let s = solve_batch(&c.free(), &start, &tight(SolverMethod::NewtonKrylov));
    assert!(
        s.records.iter().all(|r| r.converged()),
        "{:?} {}",
        s.records,
        s.states
    );
    s.states
}

/// The reference branch of the bistable unit: `grad E(v, y; lambda) = 0` in closed form,
/// followed in `steps` equal steps of lambda by Newton on the 2 x 2 system (its Jacobian by
/// central differences). Ok((v, y)) at lambda = 1, or Err(lambda) where Newton fails or the
/// Hessian of E stops being positive definite (the branch of minimisers ends).
fn reference_branch(x: f64, t: f64, beta: f64, steps: usize) -> Result<Vector2<f64>, f64> {
    let grad = |p: &Vector2<f64>, lambda: f64| {
        let (v, y) = (p[0], p[1]);
        let s1 = 1.0 / v.cosh().powi(2);
        let (fv, fy) = (-v + 2.0 * v.tanh() + x, -y + v.tanh());
        Vector2::new(
            fv * (-1.0 + 2.0 * s1) + fy * s1,
            -fy + lambda * beta * (y - t),
        )
    };
    let hessian = |p: &Vector2<f64>, lambda: f64| {
        let h = 1e-6;
        let column = |k: usize| {
            let mut e = Vector2::zeros();
            e[k] = h;
            (grad(&(p + e), lambda) - grad(&(p - e), lambda)) / (2.0 * h)
        };
        Matrix2::from_columns(&[column(0), column(1)])
    };
    // phi0 by Newton on f = 0 from the lower well.
    let mut v = -2.0f64;
    for _ in 0..50 {
        v -= (-v + 2.0 * v.tanh() + x) / (-1.0 + 2.0 / v.cosh().powi(2));
    }
    let mut p = Vector2::new(v, v.tanh());
    for k in 1..=steps {
        let lambda = k as f64 / steps as f64;
        let mut converged = false;
        for _ in 0..30 {
            let g = grad(&p, lambda);
            if g.amax() < 1e-13 {
                converged = true;
                break;
            }
            let Some(step) = hessian(&p, lambda).lu().solve(&g) else {
                break;
            };
            p -= step;
        }
        let h = hessian(&p, lambda);
        let minimum = h.determinant() > 0.0 && h.trace() > 0.0;
        if !converged || !minimum {
            return Err(lambda);
        }
    }
    Ok(p)
}

const XS: [f64; 5] = [-0.2, -0.15, -0.1, 0.0, 0.1];

#[test]
fn branch_follows_the_fine_step_continuation_and_reports_its_folds() {
    let net = bistable();
    let (t, alpha, k_i) = (1.0, 0.1, 1.0); // beta = 10: strong control
    let c = controlled(&net, &XS, t, alpha, k_i);
    let phi0 = lower_free_equilibrium(&c);
    let settings = BranchSettings::default();
    let branch = branch_equilibrium(&c, &phi0, &tight(SolverMethod::NewtonKrylov), &settings)
        .expect("a controlled system");
    let (mut on_branch, mut folds) = (0, 0);
    for (j, &x) in XS.iter().enumerate() {
        let rec = &branch.records[j];
        match (reference_branch(x, t, 10.0, 20_000), &rec.termination) {
            (Ok(p), Termination::Converged) => {
                let phi = c.phi(&branch.states).column(j).into_owned();
                let err = (phi - DMatrix::from_column_slice(2, 1, p.as_slice())).amax();
                assert!(err < 1e-8, "x = {x}: branch vs reference {err}");
                on_branch += 1;
            }
            (Err(l_ref), Termination::Fold { lambda }) => {
                // The last accepted point lies before the reference's fold, within a few
                // steps of it.
                assert!(
                    *lambda <= l_ref && *lambda > l_ref - 0.02,
                    "x = {x}: {lambda} vs {l_ref}"
                );
                assert!(!rec.converged());
                folds += 1;
            }
            (reference, got) => panic!("x = {x}: reference {reference:?}, branch {got:?}"),
        }
    }
    assert!(
        on_branch >= 2 && folds >= 2,
        "{on_branch} on the branch, {folds} folds"
    );
}

#[test]
fn flow_definition_is_the_tsit45_flow_which_switches_basin_where_the_branch_folds() {
    let net = bistable();
    let c = controlled(&net, &XS, 1.0, 0.1, 1.0);
    let phi0 = lower_free_equilibrium(&c);
    let z0 = c.state_with_phi(&phi0).unwrap();
    let reference = solve_batch(&c, &z0, &tight(SolverMethod::Tsit45));
    assert!(reference.records.iter().all(|r| r.converged()));
    let branch = branch_equilibrium(
        &c,
        &phi0,
        &tight(SolverMethod::NewtonKrylov),
        &BranchSettings::default(),
    )
    .unwrap();
    for method in [SolverMethod::Anderson, SolverMethod::NewtonKrylov] {
        let flow = solve_batch(&c, &z0, &tight(method));
        let err = (&flow.states - &reference.states).amax();
        assert!(err < 1e-6, "{method:?}: {err}");
    }
    let mut switched = 0;
    for j in 0..XS.len() {
        let (v0, v_flow) = (phi0[(0, j)], reference.states[(0, j)]);
        if v_flow > 0.0 {
            // The flow left phi0's well; the branch from phi0 does not reach lambda = 1.
            assert!(v0 < 0.0);
            assert!(
                matches!(branch.records[j].termination, Termination::Fold { .. }),
                "{j}"
            );
            switched += 1;
        } else {
            let err = (branch.states.column(j) - reference.states.column(j)).amax();
            assert!(
                err < 1e-6,
                "sample {j}: flow and branch agree in phi0's well ({err})"
            );
        }
    }
    assert!(switched >= 2, "{switched} basin switches");
}

/// Two coupled bistable units (W = [[2, -0.3], [-0.3, 2]]) under control, where Anderson
/// (first case) or Newton-Krylov (second) from phi0 converges to a stable equilibrium that
/// the flow does not reach (found by a scan over small nets).
#[test]
fn flow_certificate_rejects_the_accelerated_solvers_third_answer() {
    let net = net(
        2,
        [
            &[2.0, -0.3, -0.3, 2.0],
            &[0.0, 0.0],
            &[1.0, -0.5],
            &[0.0, 0.0],
            &[1.0, 1.0],
            &[0.0],
        ],
    );
    let cases = [
        (SolverMethod::Anderson, 1.0, 1.0, 1.0, -0.2),
        (SolverMethod::NewtonKrylov, 3.0, 0.01, 1.0, 0.2),
    ];
    for (method, t, alpha, k_i, x) in cases {
        let c = controlled(&net, &[x], t, alpha, k_i);
        let phi0 = lower_free_equilibrium(&c);
        let z0 = c.state_with_phi(&phi0).unwrap();
        let flow = solve_batch(&c, &z0, &tight(SolverMethod::Tsit45));
        assert!(flow.records[0].converged());
        let mut uncertified = tight(method);
        uncertified.accelerated.certify.enabled = false;
        uncertified.accelerated.fallback = Fallback::None;
        let third = solve_batch(&c, &z0, &uncertified);
        assert!(third.records[0].converged(), "{method:?}");
        let apart = (&third.states - &flow.states).amax();
        assert!(
            apart > 1.0,
            "{method:?} finds another equilibrium ({apart})"
        );

        let certified = solve_batch(&c, &z0, &tight(method));
        let rec = &certified.records[0];
        assert_eq!(rec.flow_certified, Some(false), "{method:?}");
        assert!(matches!(
            rec.fallback_from,
            Some(Termination::Uncertified { .. })
        ));
        assert!(rec.converged() && rec.solver == SolverMethod::Tsit45);
        assert!(
            (&certified.states - &flow.states).amax() < 1e-6,
            "{method:?}"
        );
        assert_eq!((certified.certified(), certified.uncertified()), (0, 1));

        // Without a fallback the rejected candidate is reported, never used as converged.
        let mut alone = tight(method);
        alone.accelerated.fallback = Fallback::None;
        let rec = solve_batch(&c, &z0, &alone).records.remove(0);
        assert!(
            matches!(rec.termination, Termination::Uncertified { .. }),
            "{method:?}"
        );
    }
}

#[test]
fn flow_certificate_accepts_the_flows_own_equilibrium() {
    let net = tiny_rnn();
    let x = common::inputs(3, 4, 1);
    let t = common::labels(2, 4);
    let c = system(
        &net,
        &x,
        &t,
        Loss::CrossEntropy,
        LossScale::BatchMean,
        Some(controller(0.5, 1.0, 0.0)),
    );
    let (phi0, _) = free_equilibrium(&c.free(), &tight(SolverMethod::Tsit45));
    let z0 = c.state_with_phi(&phi0).unwrap();
    for method in [SolverMethod::Anderson, SolverMethod::NewtonKrylov] {
        let s = solve_batch(&c, &z0, &tight(method));
        assert_eq!(s.certified(), 4, "{method:?}");
        assert!(s
            .records
            .iter()
            .all(|r| r.converged() && r.solver == method));
    }
}

#[test]
fn weak_control_branch_is_the_flow_and_its_update_tends_to_the_rbp_gradient() {
    let net = tiny_rnn();
    let x = common::inputs(3, 6, 2);
    let t = common::labels(2, 6);
    let ctrl = Some(controller(1e3, 1.0, 0.0)); // beta = 1e-3
    let c = system(&net, &x, &t, Loss::CrossEntropy, LossScale::BatchMean, ctrl);
    let (phi0, _) = free_equilibrium(&c.free(), &tight(SolverMethod::NewtonKrylov));
    let branch = branch_equilibrium(
        &c,
        &phi0,
        &tight(SolverMethod::NewtonKrylov),
        &BranchSettings::default(),
    )
    .unwrap();
    assert!(branch.records.iter().all(|r| r.converged()));
    let flow = solve_batch(
        &c,
        &c.state_with_phi(&phi0).unwrap(),
        &tight(SolverMethod::Tsit45),
    );
    let err = (&branch.states - &flow.states).amax();
    assert!(err < 1e-7, "branch vs flow {err}");
    let update = least_control_update(&c, &branch.states);
    let (gradient, _) = rbp_gradient(&c.free(), &phi0, &tight(SolverMethod::NewtonKrylov));
    let mut descent = gradient.clone();
    descent.scale(-1.0);
    let cosine = update.cosine(&descent);
    assert!(cosine > 0.999, "cosine(LCP, -RBP) = {cosine}");
}

#[test]
fn envelope_theorem_holds_at_the_branch_equilibrium() {
    let net = bistable();
    let (t, alpha) = (1.0, 0.1);
    let beta = 10.0;
    let xs = [-0.2, -0.15];
    let solver = tight(SolverMethod::NewtonKrylov);
    let h_alpha = |net: &RateNetwork| {
        let c = controlled(net, &xs, t, alpha, 1.0);
        let phi0 = lower_free_equilibrium(&c);
        let b = branch_equilibrium(&c, &phi0, &solver, &BranchSettings::default()).unwrap();
        assert!(b.records.iter().all(|r| r.converged()));
        let phi = c.phi(&b.states);
        let energy: f64 = relaxed_energy(&c, &phi, beta).iter().sum();
        (c.objective().combine * energy, b.states)
    };
    let (_, z) = h_alpha(&net);
    let c = controlled(&net, &xs, t, alpha, 1.0);
    // Strong control moved the equilibrium far from phi0 (the test is not the linear regime).
    let phi0 = lower_free_equilibrium(&c);
    assert!((c.phi(&z) - &phi0).amax() > 0.1);
    let update = least_control_update(&c, &z);
    let h = 1e-5;
    for k in 0..net.params().num_scalars() {
        let at = |sign: f64| {
            let mut p = net.clone();
            let v = p.params().flat_get(k);
            let mut shifted = p.params().clone();
            shifted.flat_set(k, v + sign * h);
            *p.params_mut() = shifted;
            h_alpha(&p).0
        };
        let fd = (at(1.0) - at(-1.0)) / (2.0 * h);
        let lcp = update.flat_get(k);
        assert!(
            (lcp + fd).abs() < 1e-6 * (1.0 + fd.abs()),
            "parameter {k}: LCP {lcp} vs -dH/dtheta {}",
            -fd
        );
    }
}

#[test]
fn branch_settings_and_definition_are_validated_with_their_keys() {
    let bad = |overrides: &[&str], key: &str| {
        let set: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let err = Config::load(None, &set)
            .and_then(|c| c.validate().map(|_| c))
            .expect_err("invalid");
        let message = err.to_string();
        assert!(message.contains(key), "{message}");
    };
    bad(&["method.equilibrium=\"sideways\""], "equilibrium");
    bad(
        &["method.equilibrium=\"branch\"", "method.name=\"lcp-ebd\""],
        "method.equilibrium",
    );
    bad(
        &[
            "method.equilibrium=\"branch\"",
            "method.controlled_start=\"zero\"",
        ],
        "method.controlled_start",
    );
    bad(
        &[
            "method.equilibrium=\"branch\"",
            "method.branch_min_step=0.5",
        ],
        "method.branch_min_step",
    );
    bad(
        &[
            "method.equilibrium=\"branch\"",
            "method.branch_initial_step=0",
        ],
        "method.branch_initial_step",
    );
    bad(
        &[
            "method.equilibrium=\"branch\"",
            "method.branch_corrector_iterations=0",
        ],
        "method.branch_corrector_iterations",
    );
    bad(
        &["solver.certify_tolerance=1.5"],
        "solver.certify_tolerance",
    );
    let ok = Config::load(None, &["method.equilibrium=\"branch\"".to_string()]).unwrap();
    ok.validate().unwrap();
}

/// The definition reaches training through the config: a branch run and a flow run on xor
/// (LCP-DI rnn) record their folds and certificates per epoch, and both learn.
#[test]
fn training_records_folds_and_certificates_per_epoch() {
    use lcsim::io::metrics::EpochMetrics;
    use lcsim::train::{load_split, train, Observer, TrainingState};
    struct Recorder(Vec<EpochMetrics>);
    impl Observer for Recorder {
        fn on_epoch(&mut self, _: &TrainingState, m: &EpochMetrics) -> lcsim::error::Result<()> {
            self.0.push(m.clone());
            Ok(())
        }
    }
    for equilibrium in ["flow", "branch"] {
        let sets: Vec<String> = [
            "method.name=\"lcp-di\"",
            "model.hidden=[8]",
            "data.source=\"xor\"",
            "data.synthetic_samples=200",
            "training.epochs=3",
            "training.batch_size=16",
            "training.learning_rate=0.02",
            "controller.alpha=0.1",
            "solver.atol=1e-7",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("method.equilibrium=\"{equilibrium}\"")])
        .collect();
        let config = Config::load(None, &sets).unwrap();
        config.validate().unwrap();
        let data = load_split(&config).unwrap();
        let batches = data.train.len().div_ceil(config.training.batch_size);
        let state = TrainingState::new(
            &config,
            data.train.n_inputs(),
            data.train.n_classes,
            batches,
        )
        .unwrap();
        let mut recorder = Recorder(Vec::new());
        let stop = std::sync::atomic::AtomicBool::new(false);
        train(&config, &data, state, &mut recorder, &stop).unwrap();
        let last = recorder.0.last().unwrap();
        assert!(
            (0.0..=1.0).contains(&last.fraction_folds),
            "{equilibrium}: {last:?}"
        );
        assert!(
            (0.0..=1.0).contains(&last.fraction_uncertified),
            "{equilibrium}: {last:?}"
        );
        if equilibrium == "flow" {
            assert_eq!(last.fraction_folds, 0.0);
        }
        assert!(last.test_accuracy > 0.8, "{equilibrium}: {last:?}");
    }
}
