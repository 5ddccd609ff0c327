//! LCP-KP (spec 3.2) on the convolutional systems (src/system/conv_net.rs, conv_deq.rs): with
//! the feedback weights at the forward weights the feedback path is the exact `J^T` and the
//! KP update is the DI update; with random feedback the path is the exact `J^T` of a net whose
//! weights are the feedback weights (the layered net's linearisation depends on phi only),
//! the coupled Jacobian matches finite differences, training aligns the feedback weights,
//! and the configs that stay refused name the key.

mod common;

use common::{labels, lcsim_in, opts, rel_diff, stderr};
use lcsim::config::Config;
use lcsim::control::{ControllerSettings, CoupledSystem, Feedback, LossScale, Objective};
use lcsim::learn::feedback::kolen_pollack_angles;
use lcsim::learn::plasticity::least_control_update;
use lcsim::numerics::activation::Activation;
use lcsim::numerics::pool::PoolKind;
use lcsim::numerics::rng::Rng;
use lcsim::solve::SolverMethod;
use lcsim::studies::check::precise_equilibrium_from;
use lcsim::system::conv_deq::{ConvDeq, DeqSpec};
use lcsim::system::conv_net::{ConvNet, LayerSpec};
use lcsim::system::loss::Loss;
use lcsim::system::params::Params;
use lcsim::system::EquilibriumSystem;
use lcsim::train::{load_split, train, Observer, TrainingState};
use nalgebra::DMatrix;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn random(r: usize, c: usize, seed: u64) -> DMatrix<f64> {
    let mut rng = Rng::seed_from_u64(seed);
    DMatrix::from_fn(r, c, |_, _| rng.normal())
}

fn layers(pool: PoolKind) -> Vec<LayerSpec> {
    vec![
        LayerSpec::conv(3, 3, 1).with_pool(pool, 2),
        LayerSpec::conv(2, 3, 1).with_stride(2),
        LayerSpec::dense(5),
    ]
}

fn layered(pool: PoolKind) -> ConvNet {
    ConvNet::new(&layers(pool), (2, 6, 6), 3, Activation::Tanh, 1).unwrap()
}

/// A small DEQ with kernels of std `init_std` (0.3 exercises the products at a strongly
/// coupled point; at 0.02 the free flow settles, as in `lcsim check --system deq`).
fn deq_with(init_std: f64) -> ConvDeq {
    let spec = DeqSpec {
        channels: 4,
        inner_channels: 6,
        kernel: 3,
        groups: 2,
        input_pool: 2,
        readout_pool: 2,
        init_std,
        skip_gain: 0.5,
        inner_norm: true,
        output_norm: true,
    };
    ConvDeq::new(&spec, (1, 8, 8), 3, Activation::Tanh, 2).unwrap()
}

fn deq() -> ConvDeq {
    deq_with(0.3)
}

/// The feedback weights equal to the forward weights they stand in for.
fn forward_feedback<S: EquilibriumSystem>(net: &S) -> Arc<Params> {
    Arc::new(net.kolen_pollack().unwrap().transposed_update(net.params()))
}

/// The feedback path's `J^T w`, second-order term and `(f, J^T w)` of `net` with feedback `fb`
/// against `reference`'s exact products (`reference` = net with the feedback as its weights).
fn assert_feedback_path_is_exact<S: EquilibriumSystem>(
    net: &S,
    fb: &Arc<Params>,
    reference: &S,
    what: &str,
) {
    let kp = net.kolen_pollack().unwrap();
    let (n, b) = (net.state_dim(), 3);
    let x = random(net.input_dim(), b, 10).map(|v| v.abs());
    let phi = random(n, b, 11) * 0.5;
    let (w, psi, dphi) = (random(n, b, 12), random(n, b, 13), random(n, b, 14));
    let lin = kp.linearize_with_feedback(&phi, &x, Some(&psi), fb);
    let exact_lin = reference.linearize(&phi, &x, Some(&psi));
    let exact = reference.vjp_at(&exact_lin, &w);
    let err = rel_diff(&net.vjp_at(&lin, &w), &exact);
    assert!(err <= 1e-12, "{what}: feedback path J^T w, {err:e}");
    if let Some(second) = net.second_order_at(&lin, &dphi) {
        let exact = reference.second_order_at(&exact_lin, &dphi).unwrap();
        let err = rel_diff(&second, &exact);
        assert!(err <= 1e-12, "{what}: second-order term, {err:e}");
    }
    let drive = net.input_drive(&x);
    let (f, back) = kp.field_and_feedback(&phi, &x, &drive, &w, fb);
    assert!(
        rel_diff(&f, &net.vector_field(&phi, &x)) <= 1e-15,
        "{what}: f"
    );
    assert!(
        rel_diff(&back, &exact) <= 1e-12,
        "{what}: field_and_feedback"
    );
    let (f, back) = reference.field_and_vjp(&phi, &x, &reference.input_drive(&x), &w);
    assert!(rel_diff(&f, &reference.vector_field(&phi, &x)) <= 1e-15);
    assert!(rel_diff(&back, &exact) <= 1e-15, "{what}: field_and_vjp");
}

#[test]
fn feedback_at_the_forward_weights_is_the_exact_transposed_jacobian() {
    for pool in [PoolKind::Avg, PoolKind::Max] {
        let net = layered(pool);
        assert_feedback_path_is_exact(&net, &forward_feedback(&net), &net, &format!("{pool:?}"));
    }
    let d = deq();
    assert_feedback_path_is_exact(&d, &forward_feedback(&d), &d, "DEQ");
}

#[test]
fn random_feedback_is_the_exact_transpose_of_the_feedback_weights() {
    // The layered net's linearisation (slopes, pooling selections) depends on phi only, so its
    // feedback path with B is the exact J^T of the net whose weights are B's transposes.
    for pool in [PoolKind::Avg, PoolKind::Max] {
        let net = layered(pool);
        let kp = net.kolen_pollack().unwrap();
        let fb = Arc::new(kp.init_feedback(3));
        // Layer 2 convolves (B2 is its kernel); layer 3 and the readout are dense (B3, G are
        // shaped as W3^T, D^T).
        let mut reference = net.clone();
        let p = reference.params_mut();
        *p.tensor_mut(2) = fb.tensor(0).clone();
        *p.tensor_mut(4) = fb.tensor(1).transpose();
        *p.tensor_mut(6) = fb.tensor(2).transpose();
        assert_feedback_path_is_exact(&net, &fb, &reference, &format!("random {pool:?}"));
        let angles = kp.feedback_angles(&fb);
        assert_eq!(angles.len(), 3);
        assert!(angles.iter().all(|a| *a > 45.0 && *a < 135.0), "{angles:?}");
        // B2, B3 unit Frobenius norm (spec 3.2's reference initialisation), G's shape D^T.
        assert!((fb.tensor(0).norm() - 1.0).abs() < 1e-12);
        assert!((fb.tensor(1).norm() - 1.0).abs() < 1e-12);
        assert_eq!(fb.tensor(2).shape(), (5, 3));
        assert_eq!(fb.names().collect::<Vec<_>>(), ["B2", "B3", "G"]);
        assert_ne!(kp.init_feedback(3), kp.init_feedback(4));
    }
}

#[test]
fn feedback_tensors_have_the_forward_shapes_and_angles_vanish_at_the_forward_weights() {
    let net = layered(PoolKind::Avg);
    let kp = net.kolen_pollack().unwrap();
    let fb = forward_feedback(&net);
    assert!(kp.init_feedback(1).ensure_layout(&fb).is_ok());
    // W2 is a kernel (kept), W3 and D are dense (transposed).
    let p = net.params();
    assert_eq!(fb.tensor(0), p.tensor(2));
    assert_eq!(fb.tensor(1), &p.tensor(4).transpose());
    assert_eq!(fb.tensor(2), &p.tensor(6).transpose());
    assert!(kp.feedback_angles(&fb).iter().all(|a| *a < 1e-5));
    let d = deq();
    let kp = d.kolen_pollack().unwrap();
    let fb = forward_feedback(&d);
    let init = kp.init_feedback(1);
    assert!(init.ensure_layout(&fb).is_ok());
    assert_eq!(init.names().collect::<Vec<_>>(), ["B1", "B2", "G"]);
    // B1, B2 start at the norm of the kernel they stand in for.
    for (b, k) in [(0, "K1"), (1, "K2")] {
        let norm = d.params().get(k).unwrap().norm();
        assert!((init.tensor(b).norm() - norm).abs() < 1e-12 * norm);
    }
    assert!(kp.feedback_angles(&fb).iter().all(|a| *a < 1e-5));
    let names: Vec<&str> = d.params().names().collect();
    let decaying: Vec<&str> = kp.decaying_params().iter().map(|&i| names[i]).collect();
    assert_eq!(decaying, ["K1", "K2", "D", "d"]);
    let names: Vec<&str> = net.params().names().collect();
    let kp = net.kolen_pollack().unwrap();
    let decaying: Vec<&str> = kp.decaying_params().iter().map(|&i| names[i]).collect();
    assert_eq!(decaying, ["W2", "b2", "W3", "b3", "D", "d"]);
}

fn controlled<S: EquilibriumSystem>(net: &S, batch: usize, alpha: f64) -> CoupledSystem<'_, S> {
    let x = random(net.input_dim(), batch, 20).map(|v| v.abs());
    let t = labels(net.loss_dim(), batch);
    let objective = Objective::new(Loss::CrossEntropy, LossScale::BatchMean, batch);
    let ctrl = ControllerSettings {
        alpha,
        ..ControllerSettings::default()
    };
    CoupledSystem::new(net, x, t, objective, 1.0, Some(ctrl)).unwrap()
}

/// The LCP-KP update with the feedback at the forward weights equals the LCP-DI update, and a
/// random feedback's coupled Jacobian matches finite differences of its residual.
fn assert_kp_is_di_at_the_forward_weights<S: EquilibriumSystem>(net: &S, alpha: f64, what: &str) {
    let sys = controlled(net, 3, alpha);
    let kp = sys
        .clone()
        .with_feedback(Feedback::KolenPollack(forward_feedback(net)))
        .unwrap();
    let z = random(sys.dim(), 3, 21) * 0.5;
    assert!(
        rel_diff(&sys.residual(&z), &kp.residual(&z)) < 1e-14,
        "{what}"
    );
    let dz = random(sys.dim(), 3, 22);
    let err = rel_diff(&sys.jacobian_at(&z)(&dz), &kp.jacobian_at(&z)(&dz));
    assert!(err < 1e-9, "{what}: coupled Jacobians {err:e}");

    let solver = opts(SolverMethod::Tsit45, 1e-8);
    let free = precise_equilibrium_from(&sys.free(), &sys.free().initial_state(), &solver).unwrap();
    let phi0 = sys.free().phi(&free);
    let z_di =
        precise_equilibrium_from(&sys, &sys.state_with_phi(&phi0).unwrap(), &solver).unwrap();
    let z_kp = precise_equilibrium_from(&kp, &kp.state_with_phi(&phi0).unwrap(), &solver).unwrap();
    let (di, kpu) = (
        least_control_update(&sys, &z_di),
        least_control_update(&kp, &z_kp),
    );
    let mut diff = di.clone();
    diff.axpy(-1.0, &kpu);
    let err = diff.norm() / di.norm();
    assert!(
        di.norm() > 0.0 && err < 1e-12,
        "{what}: KP vs DI update {err:e}"
    );

    let random_fb = Arc::new(net.kolen_pollack().unwrap().init_feedback(5));
    let kp = sys
        .clone()
        .with_feedback(Feedback::KolenPollack(random_fb))
        .unwrap();
    let (r_di, r_kp) = (sys.residual(&z), kp.residual(&z));
    let phi = sys.phi_rows();
    assert_eq!(r_di.rows_range(phi.clone()), r_kp.rows_range(phi), "{what}");
    assert!(
        rel_diff(&r_di, &r_kp) > 1e-3,
        "{what}: the feedback path changed"
    );
    let h = 1e-6;
    let fd = (kp.residual(&(&z + &dz * h)) - kp.residual(&(&z - &dz * h))) / (2.0 * h);
    let err = rel_diff(&kp.jacobian_at(&z)(&dz), &fd);
    assert!(
        err < 1e-7,
        "{what}: KP Jacobian vs finite differences {err:e}"
    );
}

#[test]
fn kp_with_the_forward_weights_is_dynamic_inversion() {
    assert_kp_is_di_at_the_forward_weights(&layered(PoolKind::Avg), 0.3, "conv net");
    assert_kp_is_di_at_the_forward_weights(&deq_with(0.02), 1.0, "DEQ");
}

struct Angles(Vec<Vec<f64>>);
impl<S: lcsim::train::Trainable> Observer<S> for Angles {
    fn on_epoch(
        &mut self,
        s: &TrainingState<S>,
        _: &lcsim::io::metrics::EpochMetrics,
    ) -> lcsim::error::Result<()> {
        self.0
            .push(kolen_pollack_angles(&s.net, s.feedback.as_ref().unwrap()));
        Ok(())
    }
}

/// Trains `state` for the config's epochs; the angles at the start and after each epoch.
fn train_angles<S: lcsim::train::Trainable>(
    config: &Config,
    state: TrainingState<S>,
) -> Vec<Vec<f64>> {
    let data = load_split(config).unwrap();
    let start = kolen_pollack_angles(&state.net, state.feedback.as_ref().unwrap());
    let mut rec = Angles(vec![start]);
    train(config, &data, state, &mut rec, &AtomicBool::new(false)).unwrap();
    rec.0
}

#[test]
fn kp_training_on_digits_aligns_the_feedback_weights() {
    // Two short runs on the embedded digits: a small conv net (400 training images) and the
    // default DEQ (200 images; with 100 its free flow stops settling in epoch 2); every
    // feedback tensor's angle to its weight falls each epoch.
    let config = |sets: &[&str]| {
        let mut all = vec![
            "method.name=\"lcp-kp\"",
            "training.epochs=2",
            "training.diagnostics_samples=0",
            "data.test_limit=50",
        ];
        all.extend_from_slice(sets);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        Config::load(None, &all).unwrap()
    };
    let batches = |c: &Config| {
        load_split(c)
            .unwrap()
            .train
            .len()
            .div_ceil(c.training.batch_size)
    };
    let assert_falling = |angles: Vec<Vec<f64>>, what: &str| {
        for k in 0..3 {
            let a: Vec<f64> = angles.iter().map(|a| a[k]).collect();
            assert!(
                a[1] < a[0] && a[2] < a[1],
                "{what}, feedback tensor {k}: angles {angles:.1?}"
            );
        }
    };
    let conv = config(&[
        "model.kind=\"conv\"",
        "data.train_limit=400",
        "conv.layers=[{kind=\"conv\",channels=4,kernel=3,pad=1,pool=\"avg\"},{kind=\"conv\",channels=4,kernel=3,pad=1},{kind=\"dense\",units=16}]",
    ]);
    let state =
        TrainingState::with_system(conv.conv_net(10).unwrap(), &conv, batches(&conv)).unwrap();
    assert_falling(train_angles(&conv, state), "conv net");
    let deq = config(&["model.kind=\"deq\"", "data.train_limit=200"]);
    let state = TrainingState::with_system(deq.conv_deq(10).unwrap(), &deq, batches(&deq)).unwrap();
    assert_falling(train_angles(&deq, state), "DEQ");
}

#[test]
fn config_accepts_lcp_kp_for_conv_and_deq_and_still_refuses_lcp_lf() {
    for kind in ["conv", "deq"] {
        let sets = vec![
            format!("model.kind=\"{kind}\""),
            "method.name=\"lcp-kp\"".to_string(),
            "kp.weight_decay=1e-4".to_string(),
        ];
        let c = Config::load(None, &sets).unwrap();
        assert_eq!(c.kp.unwrap().weight_decay, 1e-4);
    }
    let dir = tempfile::tempdir().unwrap();
    for kind in ["conv", "deq"] {
        let model = format!("model.kind=\"{kind}\"");
        let out = lcsim_in(
            dir.path(),
            &[
                "train",
                "--quiet",
                "--set",
                &model,
                "--set",
                "method.name=\"lcp-lf\"",
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{kind}");
        let e = stderr(&out);
        assert!(
            e.contains("method.name") && e.contains("lcp-lf") && e.contains("lcp-kp"),
            "{e}"
        );
    }
    assert!(!dir.path().join("runs").exists());
}
