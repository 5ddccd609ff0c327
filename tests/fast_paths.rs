//! The in-place hot paths of issue 16 against the reference paths they replace: the
//! residual written into a buffer (`VectorField::residual_into`: the free and controlled
//! coupled systems, every feedback circuit, RBP's adjoint system) against the allocating
//! `residual`, and a whole RBP batch by the chunked in-place Euler against one sample at a
//! time through the reference Euler (`solve_steady_state`) with its own gradient.

mod common;

use common::{controller, inputs, labels, max_abs_diff, random_matrix, rnn, system, Sys};
use lcsim::control::{Feedback, LossScale};
use lcsim::learn::rbp::{adjoint_system, gradient_from_adjoints, rbp_gradient};
use lcsim::numerics::activation::Activation;
use lcsim::solve::{solve_batch, solve_steady_state, SolverMethod, SolverSettings, VectorField};
use lcsim::system::loss::Loss;
use lcsim::system::rate::RateNetwork;
use lcsim::system::KolenPollack;
use nalgebra::DMatrix;
use std::sync::Arc;

/// `residual_into` into a buffer full of NaN (every entry must be written) against
/// `residual`, on a state with entries of both signs.
fn assert_residual_into_matches<F: VectorField>(field: &F, seed: u64, what: &str) {
    let z = random_matrix(field.dim(), field.batch(), seed, -1.5, 1.5);
    let expected = field.residual(&z);
    let mut r = DMatrix::from_element(field.dim(), field.batch(), f64::NAN);
    field.residual_into(&z, &mut r);
    assert!(r.iter().all(|v| v.is_finite()), "{what}: entry not written");
    let d = max_abs_diff(&r, &expected);
    assert!(
        d <= 1e-14 * (1.0 + expected.amax()),
        "{what}: differs by {d:e}"
    );
}

fn net() -> RateNetwork {
    rnn(5, 9, 3, Activation::Tanh, 3)
}

fn batch(net: &RateNetwork, b: usize, ctrl: Option<lcsim::control::ControllerSettings>) -> Sys<'_> {
    let x = inputs(net.n_x(), b, 4);
    let t = labels(net.n_y(), b);
    system(net, &x, &t, Loss::CrossEntropy, LossScale::BatchMean, ctrl)
}

#[test]
fn residual_into_equals_residual_for_every_field() {
    let net = net();
    let mut slow = controller(0.1, 1.0, 0.3);
    slow.tau_u = 2.0;
    slow.tau_e = 0.5;
    let controlled = batch(&net, 6, Some(slow));
    let free = controlled.free();
    assert_residual_into_matches(&free, 1, "free");
    assert_residual_into_matches(&controlled, 2, "controlled (dynamic inversion)");
    let kp = Feedback::KolenPollack(Arc::new(net.init_feedback(8)));
    let kp = controlled.clone().with_feedback(kp).unwrap();
    assert_residual_into_matches(&kp, 3, "controlled (Kolen-Pollack)");
    let q = random_matrix(net.n_h(), net.n_y(), 9, -0.5, 0.5);
    let lf = controlled
        .clone()
        .with_feedback(Feedback::Linear(Arc::new(q)));
    assert_residual_into_matches(&lf.unwrap(), 4, "controlled (linear feedback)");
    let phi0 = random_matrix(free.dim(), free.batch(), 5, -1.0, 1.0);
    assert_residual_into_matches(&adjoint_system(&free, &phi0), 6, "RBP adjoint");
}

#[test]
fn rbp_batch_fast_path_agrees_with_one_sample_at_a_time() {
    // Fast path: solve_batch (chunks of 4 samples, in-place Euler, residual_into) for the
    // free equilibria and the adjoints, then the batch gradient. Reference: every sample
    // alone through solve_steady_state's Euler (the allocating residual), the gradient
    // from those adjoints.
    let net = rnn(6, 12, 4, Activation::Tanh, 21);
    let free = batch(&net, 10, None);
    let mut o = SolverSettings {
        method: SolverMethod::Euler,
        ..SolverSettings::default()
    };
    o.euler.dt = 1.0;
    o.stop.atol = 1e-9;
    o.stop.rtol = 1e-9;
    o.accelerated.chunk = 4;
    let relaxed = solve_batch(&free, &free.initial_state(), &o);
    assert_eq!(relaxed.fraction_converged(), 1.0);
    let phi0 = free.phi(&relaxed.states);
    let (gradient, adjoints) = rbp_gradient(&free, &phi0, &o);
    assert_eq!(adjoints.fraction_converged(), 1.0);

    let z0 = free.initial_state();
    let mut phi_ref = DMatrix::zeros(phi0.nrows(), phi0.ncols());
    for j in 0..free.batch() {
        let alone = solve_steady_state(&free.sample(j), &z0.columns(j, 1).into_owned(), &o, &[]);
        assert_eq!(alone.steps, relaxed.records[j].steps, "free sample {j}");
        phi_ref.set_column(j, &alone.state.column(0));
    }
    assert!(max_abs_diff(&phi0, &phi_ref) <= 1e-10);
    let adjoint = adjoint_system(&free, &phi_ref);
    let mut lambda = DMatrix::zeros(phi0.nrows(), phi0.ncols());
    for j in 0..free.batch() {
        let one = adjoint.select_samples(&[j]);
        let start = DMatrix::zeros(phi0.nrows(), 1);
        let alone = solve_steady_state(&one, &start, &o, &[]);
        assert!(alone.converged(), "adjoint sample {j}");
        assert_eq!(alone.steps, adjoints.records[j].steps, "adjoint sample {j}");
        lambda.set_column(j, &alone.state.column(0));
    }
    assert!(max_abs_diff(&adjoints.states, &lambda) <= 1e-10);
    let reference = gradient_from_adjoints(&free, &phi_ref, &lambda);
    for ((name, fast), (_, slow)) in gradient.iter().zip(reference.iter()) {
        let d = max_abs_diff(fast, slow);
        assert!(d <= 1e-10 * (1.0 + slow.amax()), "{name}: differs by {d:e}");
    }
}

#[test]
fn euler_chunks_with_unequal_time_constants_take_each_samples_own_steps() {
    // The in-place Euler divides by tau unless every tau is 1: the controlled system with
    // tau_u = 2, tau_e = 0.5 takes that branch; each sample must end as its own solve.
    let net = net();
    let mut slow = controller(0.1, 1.0, 0.0);
    slow.tau_u = 2.0;
    slow.tau_e = 0.5;
    let sys = batch(&net, 7, Some(slow));
    let mut o = SolverSettings {
        method: SolverMethod::Euler,
        ..SolverSettings::default()
    };
    o.euler.dt = 0.25;
    o.stop.atol = 1e-9;
    o.stop.rtol = 0.0;
    o.accelerated.chunk = 3;
    let z0 = sys.initial_state();
    let solved = solve_batch(&sys, &z0, &o);
    assert_eq!(solved.fraction_converged(), 1.0);
    for (j, rec) in solved.records.iter().enumerate() {
        let alone = solve_steady_state(&sys.sample(j), &z0.columns(j, 1).into_owned(), &o, &[]);
        assert_eq!(rec.steps, alone.steps, "sample {j}");
        assert_eq!(rec.rhs_evals, alone.rhs_evals, "sample {j}");
        assert_eq!(rec.time, alone.time, "sample {j}");
        let d = max_abs_diff(&rec.state, &alone.state);
        assert!(d <= 1e-12, "sample {j}: states differ by {d:e}");
    }
}
