//! The rate network as an equilibrium system (src/system/rate.rs): J^T against J and the
//! second-order term against finite differences of J^T, the PyTorch initialisation and its
//! seed, and the parameter interchange layout (named arrays, and what they refuse). Expected
//! values are computed independently here, never copied from the library's own output.

mod common;

use std::collections::BTreeMap;

use common::{
    assert_close, assert_matrix_close, controller, inputs, labels, random_matrix, rnn, system,
    tiny_layered, tiny_rnn,
};
use lcsim::control::{relax, LossScale};
use lcsim::error::LcsimError;
use lcsim::learn::plasticity::least_control_update;
use lcsim::numerics::activation::Activation;
use lcsim::solve::SolverSettings;
use lcsim::system::loss::Loss;
use lcsim::system::params::Params;
use lcsim::system::rate::{RateNetwork, Topology, B, C, D, D_BIAS, E, W};
use lcsim::system::EquilibriumSystem;
use nalgebra::DMatrix;

// ---------------------------------------------------------------------------------------
// Jacobian products of the network
// ---------------------------------------------------------------------------------------

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
// Initialisation and determinism
// ---------------------------------------------------------------------------------------

fn params_bits(p: &Params) -> Vec<(String, Vec<u64>)> {
    p.iter()
        .map(|(n, m)| (n.to_string(), m.iter().map(|v| v.to_bits()).collect()))
        .collect()
}

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
// Parameter interchange layout (named arrays)
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
