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
