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

/// The single-precision tanh (`solver.precision = "f32"`) against std's f64 tanh rounded to
/// f32: within one ulp everywhere, mostly equal; exact at 0, +-inf and NaN.
#[test]
fn single_precision_tanh_is_within_an_ulp_of_the_rounded_tanh() {
    use lcsim::numerics::activation::tanh_f32_into;
    let mut xs: Vec<f32> = (0..=600_000)
        .map(|k| -30.0 + 60.0 * k as f32 / 600_000.0)
        .collect();
    for k in 0..2000 {
        let x = 0.625 + (k as f32 - 1000.0) * 1e-6;
        xs.extend([x, -x, 22.0 + (k as f32 - 1000.0) * 1e-5]);
    }
    for e in -45..2 {
        for m in [1.0f32, 2.5, 7.9] {
            xs.extend([m * 10f32.powi(e), -m * 10f32.powi(e)]);
        }
    }
    xs.extend([
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN,
    ]);
    let mut out = vec![0.0f32; xs.len()];
    tanh_f32_into(&xs, &mut out);
    let (mut off, mut worst) = (0usize, 0i64);
    for (&x, &y) in xs.iter().zip(&out) {
        let exact = (x as f64).tanh() as f32;
        let ulps = (y.to_bits() as i64 - exact.to_bits() as i64).abs();
        assert!(ulps <= 1, "tanh({x:e}) = {y:e}, rounded tanh {exact:e}");
        assert_eq!(y.is_sign_negative(), exact.is_sign_negative(), "{x:e}");
        off += (ulps > 0) as usize;
        worst = worst.max(ulps);
    }
    assert!(off * 1000 < xs.len(), "{off} of {} off by an ulp", xs.len());
    tanh_f32_into(&[f32::NAN], &mut out[..1]);
    assert!(out[0].is_nan());
    tanh_f32_into(&[0.0, -0.0], &mut out[..2]);
    assert!(out[0] == 0.0 && out[1] == 0.0 && out[1].is_sign_negative());
}
