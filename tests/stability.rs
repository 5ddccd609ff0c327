//! The spectral-norm bound that keeps the free equilibrium stable (issue 13 item 3),
//! checked against nalgebra's SVD.

use lcsim::config::Config;
use lcsim::numerics::spectral::{project_spectral_norm, spectral_norm};
use nalgebra::DMatrix;

/// A reproducible dense test matrix (no RNG needed).
fn matrix(r: usize, c: usize, scale: f64) -> DMatrix<f64> {
    DMatrix::from_fn(r, c, |i, j| {
        scale * (((i * 7 + j * 13) as f64 * 0.37).sin() + 0.3 * ((i * j) as f64 * 0.11).cos())
    })
}

fn svd_norm(w: &DMatrix<f64>) -> f64 {
    w.clone().svd(false, false).singular_values.max()
}

#[test]
fn power_iteration_matches_svd() {
    for (r, c) in [(20, 20), (37, 15), (8, 50), (100, 100)] {
        let w = matrix(r, c, 1.0);
        let (a, b) = (spectral_norm(&w), svd_norm(&w));
        assert!((a - b).abs() <= 1e-8 * b, "{r}x{c}: power {a} svd {b}");
    }
}

#[test]
fn projection_bounds_the_norm_and_keeps_the_direction() {
    let w0 = matrix(40, 40, 0.5);
    let before = svd_norm(&w0);
    let bound = 0.9;
    assert!(before > bound);
    let mut w = w0.clone();
    let reported = project_spectral_norm(&mut w, bound);
    assert!((reported - before).abs() <= 1e-8 * before);
    let after = svd_norm(&w);
    assert!(after <= bound * (1.0 + 1e-9), "||W||_2 = {after} > {bound}");
    assert!(after >= bound * (1.0 - 1e-9), "projected too far: {after}");
    // A rescaling: W = (bound / sigma) W0.
    assert!((&w - &w0 * (bound / before)).amax() <= 1e-12);
}

#[test]
fn projection_is_the_identity_inside_the_ball() {
    let w0 = matrix(30, 30, 0.01);
    assert!(svd_norm(&w0) < 0.9);
    let mut w = w0.clone();
    project_spectral_norm(&mut w, 0.9);
    assert_eq!(w, w0);
}

#[test]
fn negative_bound_is_rejected_naming_the_field() {
    let mut config = Config::default();
    config.training.spectral_bound = -0.5;
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("training.spectral_bound"), "{err}");
    assert!(err.contains("-0.5"), "{err}");
}
