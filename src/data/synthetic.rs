//! Two small synthetic tasks: XOR and two moons.

use nalgebra::DMatrix;

use super::{permutation, Dataset};
use crate::numerics::rng::Rng;

fn check_noise(noise: f64) {
    assert!(
        noise.is_finite() && noise >= 0.0,
        "synthetic data noise must be a finite number >= 0, got {noise}"
    );
}

/// Puts the columns of `inputs` and the `labels` into a seeded random order.
fn shuffled_dataset(
    inputs: DMatrix<f64>,
    labels: Vec<usize>,
    name: &str,
    rng: &mut Rng,
) -> Dataset {
    let order = permutation(labels.len(), rng);
    Dataset {
        inputs: inputs.select_columns(&order),
        labels: order.iter().map(|&i| labels[i]).collect(),
        n_classes: 2,
        name: name.to_string(),
        targets: None,
    }
}

/// The XOR task: `n` 2-D points, the k-th around corner `k mod 4` of the unit square
/// ((0,0), (0,1), (1,0), (1,1)) plus Gaussian noise of standard deviation `noise`, label =
/// XOR of the corner's bits (2 classes, counts differing by at most 1), in seeded random
/// order.
///
/// # Panics
/// If `noise` is negative or not finite.
pub fn xor(n: usize, noise: f64, seed: u64) -> Dataset {
    check_noise(noise);
    let mut rng = Rng::seed_from_u64(seed);
    let mut inputs = DMatrix::zeros(2, n);
    let mut labels = Vec::with_capacity(n);
    for k in 0..n {
        let (a, b) = ((k >> 1) & 1, k & 1);
        inputs[(0, k)] = a as f64 + noise * rng.normal();
        inputs[(1, k)] = b as f64 + noise * rng.normal();
        labels.push(a ^ b);
    }
    shuffled_dataset(inputs, labels, "xor", &mut rng)
}

/// Two interleaving half circles like scikit-learn's `make_moons`: `n / 2` points (rounded
/// down) evenly spaced on the upper arc `(cos t, sin t)` (class 0), the rest on the lower
/// arc `(1 - cos t, 0.5 - sin t)` (class 1), t in [0, pi], plus Gaussian noise of standard
/// deviation `noise` in those units; then scaled by 1/3 with the aspect ratio kept,
/// `x -> (x + 1) / 3`, `y -> (y + 0.5) / 3 + 0.25`, so the noiseless moons fill
/// [0, 1] x [0.25, 0.75]. Seeded random order.
///
/// # Panics
/// If `noise` is negative or not finite.
pub fn two_moons(n: usize, noise: f64, seed: u64) -> Dataset {
    check_noise(noise);
    let mut rng = Rng::seed_from_u64(seed);
    let n_outer = n / 2;
    let n_inner = n - n_outer;
    let angle = |i: usize, m: usize| {
        if m > 1 {
            std::f64::consts::PI * i as f64 / (m - 1) as f64
        } else {
            0.0
        }
    };
    let mut inputs = DMatrix::zeros(2, n);
    let mut labels = Vec::with_capacity(n);
    for k in 0..n {
        let (x, y, label) = if k < n_outer {
            let t = angle(k, n_outer);
            (t.cos(), t.sin(), 0)
        } else {
            let t = angle(k - n_outer, n_inner);
            (1.0 - t.cos(), 0.5 - t.sin(), 1)
        };
        let x = x + noise * rng.normal();
        let y = y + noise * rng.normal();
        inputs[(0, k)] = (x + 1.0) / 3.0;
        inputs[(1, k)] = (y + 0.5) / 3.0 + 0.25;
        labels.push(label);
    }
    shuffled_dataset(inputs, labels, "two-moons", &mut rng)
}
