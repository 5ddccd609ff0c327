//! The products of src/numerics/linalg.rs against a naive triple loop, and the product-FLOP
//! meter `lcsim throughput` reads: each product adds exactly `2 m n k`. One test function, so
//! that no other product in this binary runs while the meter is read.

mod common;

use common::random_matrix;
use lcsim::numerics::linalg::{gemm, mul, mul_tr, product_flop, tr_mul, Op};
use nalgebra::DMatrix;

/// `a b` by the definition.
fn naive(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
    DMatrix::from_fn(a.nrows(), b.ncols(), |i, j| {
        (0..a.ncols()).map(|k| a[(i, k)] * b[(k, j)]).sum()
    })
}

#[test]
fn products_match_the_definition_and_count_2mnk_flop_each() {
    let (m, k, n) = (7, 5, 3);
    let a = random_matrix(m, k, 1, -1.0, 1.0);
    let b = random_matrix(k, n, 2, -1.0, 1.0);
    let at = a.transpose();
    let bt = b.transpose();
    let expected = naive(&a, &b);
    let flop = 2 * (m * n * k) as u64;
    let close = |c: &DMatrix<f64>, what: &str| {
        let d = (c - &expected).amax();
        assert!(
            d <= 1e-13,
            "{what}: differs from the naive product by {d:e}"
        );
    };
    let counted = |what: &str, products: u64, product: &dyn Fn() -> DMatrix<f64>| {
        let before = product_flop();
        let c = product();
        assert_eq!(
            product_flop() - before,
            products * flop,
            "{what}: FLOPs counted"
        );
        close(&c, what);
    };
    counted("mul", 1, &|| mul(a.as_view(), b.as_view()));
    counted("tr_mul", 1, &|| tr_mul(at.as_view(), b.as_view()));
    counted("mul_tr", 1, &|| mul_tr(a.as_view(), bt.as_view()));
    // c = ab - ab + ab: an accumulated plain and an accumulated transposed product.
    counted("gemm accumulate", 2, &|| {
        let mut c = expected.clone();
        gemm(&mut c, -1.0, a.as_view(), Op::Plain, b.as_view(), true);
        gemm(&mut c, 1.0, at.as_view(), Op::Transposed, b.as_view(), true);
        c
    });
}
