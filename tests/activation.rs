//! The rate nonlinearities (src/numerics/activation.rs): the own tanh against std's.

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

#[test]
fn rates_into_equals_rate_entrywise_for_every_activation() {
    // The slice form runs in the widest vector registers; it must give the scalar values
    // bit for bit (lengths leave remainders after any vector width).
    use lcsim::numerics::activation::Activation;
    let mut v: Vec<f64> = (0..=20_001)
        .map(|k| -25.0 + 50.0 * k as f64 / 20_001.0)
        .collect();
    v.extend([
        0.0,
        -0.0,
        0.625,
        -0.625,
        22.0,
        -22.0,
        1e-300,
        f64::INFINITY,
        f64::NAN,
    ]);
    for a in [Activation::Tanh, Activation::Relu, Activation::Sigmoid] {
        let mut out = vec![0.0; v.len()];
        a.rates_into(&v, &mut out);
        for (x, o) in v.iter().zip(&out) {
            let want = a.rate(*x);
            assert!(
                o.to_bits() == want.to_bits() || (o.is_nan() && want.is_nan()),
                "{a:?}({x:e}): {o:e} vs {want:e}"
            );
        }
    }
}
