//! Convolution kernels against a naive direct convolution, the adjoint identity and
//! finite differences of the weight gradient.

use lcsim::numerics::conv::{Conv2d, ConvError};
use lcsim::numerics::rng::Rng;
use nalgebra::DMatrix;

fn random(r: usize, c: usize, rng: &mut Rng) -> DMatrix<f64> {
    DMatrix::from_fn(r, c, |_, _| rng.normal())
}

/// Direct convolution with explicit bounds checks, independent of im2col.
fn naive(s: &Conv2d, wt: &DMatrix<f64>, x: &DMatrix<f64>) -> DMatrix<f64> {
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut y = DMatrix::zeros(s.out_len(), x.ncols());
    for b in 0..x.ncols() {
        for o in 0..s.out_c {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = 0.0;
                    for c in 0..s.in_c {
                        for dy in 0..s.k {
                            for dx in 0..s.k {
                                let iy = (oy * s.stride + dy) as i64 - s.pad as i64;
                                let ix = (ox * s.stride + dx) as i64 - s.pad as i64;
                                if iy >= 0 && ix >= 0 && (iy as usize) < s.h && (ix as usize) < s.w
                                {
                                    let i = (c * s.h + iy as usize) * s.w + ix as usize;
                                    acc += wt[(o, (c * s.k + dy) * s.k + dx)] * x[(i, b)];
                                }
                            }
                        }
                    }
                    y[((o * oh + oy) * ow + ox, b)] = acc;
                }
            }
        }
    }
    y
}

fn shapes() -> Vec<Conv2d> {
    vec![
        Conv2d::new(1, 2, 5, 5, 3, 1).unwrap(),
        Conv2d::new(3, 4, 6, 4, 3, 0).unwrap(),
        Conv2d::new(2, 3, 4, 7, 2, 2).unwrap(),
        Conv2d::new(2, 3, 7, 6, 3, 1)
            .unwrap()
            .with_stride(2)
            .unwrap(),
        Conv2d::new(1, 2, 8, 8, 5, 1)
            .unwrap()
            .with_stride(3)
            .unwrap(),
    ]
}

#[test]
fn forward_matches_naive_direct_convolution() {
    let mut rng = Rng::seed_from_u64(1);
    for s in shapes() {
        let wt = random(s.out_c, s.patch_len(), &mut rng);
        let x = random(s.in_len(), 3, &mut rng);
        let got = s.forward(&wt, &x);
        let want = naive(&s, &wt, &x);
        assert_eq!(got.shape(), want.shape());
        assert!((got - want).amax() < 1e-12, "{s:?}");
    }
}

#[test]
fn transpose_satisfies_adjoint_identity() {
    let mut rng = Rng::seed_from_u64(2);
    for s in shapes() {
        let wt = random(s.out_c, s.patch_len(), &mut rng);
        let v = random(s.in_len(), 2, &mut rng);
        let w = random(s.out_len(), 2, &mut rng);
        let lhs = naive(&s, &wt, &v).dot(&w);
        let rhs = v.dot(&s.transpose(&wt, &w));
        assert!(
            (lhs - rhs).abs() < 1e-10 * lhs.abs().max(1.0),
            "{s:?}: {lhs} vs {rhs}"
        );
    }
}

#[test]
fn weight_grad_matches_finite_differences() {
    let mut rng = Rng::seed_from_u64(3);
    for s in shapes() {
        let wt = random(s.out_c, s.patch_len(), &mut rng);
        let x = random(s.in_len(), 2, &mut rng);
        let g = random(s.out_len(), 2, &mut rng);
        let grad = s.weight_grad(&x, &g);
        let h = 1e-6;
        for (o, p) in [
            (0, 0),
            (s.out_c - 1, s.patch_len() - 1),
            (s.out_c / 2, s.patch_len() / 2),
        ] {
            let (mut up, mut dn) = (wt.clone(), wt.clone());
            up[(o, p)] += h;
            dn[(o, p)] -= h;
            let fd = (naive(&s, &up, &x).dot(&g) - naive(&s, &dn, &x).dot(&g)) / (2.0 * h);
            assert!(
                (fd - grad[(o, p)]).abs() < 1e-6 * fd.abs().max(1.0),
                "{s:?} ({o},{p}): {fd} vs {}",
                grad[(o, p)]
            );
        }
    }
}

#[test]
fn bad_shapes_are_errors_naming_the_field() {
    match Conv2d::new(0, 1, 4, 4, 3, 0) {
        Err(ConvError::Shape { field, value, .. }) => assert_eq!((field, value), ("in_c", 0)),
        other => panic!("expected an in_c error, got {other:?}"),
    }
    match Conv2d::new(1, 1, 2, 2, 5, 1) {
        Err(
            e @ ConvError::Shape {
                field: "k",
                value: 5,
                ..
            },
        ) => {
            assert!(e.to_string().contains("k = 5"))
        }
        other => panic!("expected a k error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Pooling and group normalisation (src/numerics/pool.rs, norm.rs)
// ---------------------------------------------------------------------------------------

use lcsim::numerics::norm::GroupNorm;
use lcsim::numerics::pool::{Pool2d, PoolKind};

/// Max or mean over each window, by explicit loops over the window's (y, x).
fn naive_pool(p: &Pool2d, x: &DMatrix<f64>) -> DMatrix<f64> {
    let (oh, ow) = (p.out_h(), p.out_w());
    DMatrix::from_fn(p.out_len(), x.ncols(), |r, b| {
        let (c, oy, ox) = (r / (oh * ow), (r / ow) % oh, r % ow);
        let vals: Vec<f64> = (0..p.size * p.size)
            .map(|k| {
                let (y, xx) = (oy * p.stride + k / p.size, ox * p.stride + k % p.size);
                x[((c * p.h + y) * p.w + xx, b)]
            })
            .collect();
        match p.kind {
            PoolKind::Max => vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            PoolKind::Avg => vals.iter().sum::<f64>() / vals.len() as f64,
        }
    })
}

fn pools() -> Vec<Pool2d> {
    let mut out = Vec::new();
    for kind in [PoolKind::Max, PoolKind::Avg] {
        out.push(Pool2d::new(kind, 2, 6, 6, 2, 2).unwrap());
        out.push(Pool2d::new(kind, 3, 7, 5, 3, 2).unwrap());
        out.push(Pool2d::new(kind, 1, 4, 4, 4, 1).unwrap());
    }
    out
}

#[test]
fn pooling_matches_naive_and_its_products_are_adjoint_and_exact() {
    let mut rng = Rng::seed_from_u64(4);
    for p in pools() {
        let x = random(p.in_len(), 3, &mut rng);
        let (y, lin) = p.forward(&x);
        assert!((&y - naive_pool(&p, &x)).amax() < 1e-15, "{p:?}");
        let dx = random(p.in_len(), 3, &mut rng);
        let g = random(p.out_len(), 3, &mut rng);
        // <J dx, g> = <dx, J^T g>.
        let (lhs, rhs) = (p.jvp(&lin, &dx).dot(&g), dx.dot(&p.vjp(&lin, &g)));
        assert!((lhs - rhs).abs() < 1e-12 * lhs.abs().max(1.0), "{p:?}");
        // J dx is the derivative of the pooling (random inputs have no ties).
        let h = 1e-6;
        let fd = (naive_pool(&p, &(&x + &dx * h)) - naive_pool(&p, &(&x - &dx * h))) / (2.0 * h);
        assert!((fd - p.jvp(&lin, &dx)).amax() < 1e-8, "{p:?}");
    }
}

#[test]
fn pooling_shapes_that_do_not_fit_are_errors_naming_the_field() {
    match Pool2d::new(PoolKind::Max, 1, 3, 3, 4, 1) {
        Err(ConvError::Shape { field, value, .. }) => assert_eq!((field, value), ("pool size", 4)),
        other => panic!("expected a pool size error, got {other:?}"),
    }
    assert!(Pool2d::new(PoolKind::Avg, 1, 3, 3, 2, 0).is_err());
    match Conv2d::new(1, 1, 4, 4, 3, 0).unwrap().with_stride(0) {
        Err(ConvError::Shape { field, .. }) => assert_eq!(field, "stride"),
        other => panic!("expected a stride error, got {other:?}"),
    }
}

/// GroupNorm computed directly from its definition, per sample and group.
fn naive_group_norm(
    n: &GroupNorm,
    x: &DMatrix<f64>,
    gamma: &DMatrix<f64>,
    beta: &DMatrix<f64>,
) -> DMatrix<f64> {
    let m = n.len() / n.groups;
    DMatrix::from_fn(x.nrows(), x.ncols(), |i, b| {
        let g = i / m;
        let vals: Vec<f64> = (g * m..(g + 1) * m).map(|k| x[(k, b)]).collect();
        let mean = vals.iter().sum::<f64>() / m as f64;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / m as f64;
        let c = i / n.spatial;
        gamma[(c, 0)] * (x[(i, b)] - mean) / (var + n.eps).sqrt() + beta[(c, 0)]
    })
}

#[test]
fn group_norm_matches_its_definition_and_its_products_match_finite_differences() {
    let mut rng = Rng::seed_from_u64(5);
    for (channels, groups, spatial) in [(4, 2, 9), (6, 3, 4), (3, 1, 5)] {
        let n = GroupNorm::new(channels, groups, spatial, 1e-5).unwrap();
        let x = random(n.len(), 3, &mut rng) * 2.0;
        let gamma = random(channels, 1, &mut rng);
        let beta = random(channels, 1, &mut rng);
        let (y, lin) = n.forward(&x, &gamma, &beta);
        assert!((&y - naive_group_norm(&n, &x, &gamma, &beta)).amax() < 1e-12);
        let dx = random(n.len(), 3, &mut rng);
        let h = 1e-6;
        let at = |x: &DMatrix<f64>| naive_group_norm(&n, x, &gamma, &beta);
        let fd = (at(&(&x + &dx * h)) - at(&(&x - &dx * h))) / (2.0 * h);
        let jdx = n.jvp(&lin, &gamma, &dx);
        assert!((&fd - &jdx).amax() < 1e-7 * fd.amax().max(1.0), "J dx");
        // <J dx, g> = <dx, J^T g>.
        let g = random(n.len(), 3, &mut rng);
        let (lhs, rhs) = (jdx.dot(&g), dx.dot(&n.vjp(&lin, &gamma, &g)));
        assert!(
            (lhs - rhs).abs() < 1e-10 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
        // d<g, y>/d gamma_c and d beta_c.
        let (dgamma, dbeta) = n.param_vjp(&lin, &g);
        for c in 0..channels {
            for (which, grad) in [(0, &dgamma), (1, &dbeta)] {
                let probe = |d: f64| {
                    let (mut gm, mut bt) = (gamma.clone(), beta.clone());
                    if which == 0 {
                        gm[(c, 0)] += d;
                    } else {
                        bt[(c, 0)] += d;
                    }
                    naive_group_norm(&n, &x, &gm, &bt).dot(&g)
                };
                let fd = (probe(h) - probe(-h)) / (2.0 * h);
                assert!((fd - grad[(c, 0)]).abs() < 1e-7 * fd.abs().max(1.0));
            }
        }
    }
    assert!(
        GroupNorm::new(6, 4, 3, 1e-5).is_err(),
        "4 groups of 6 channels"
    );
}
