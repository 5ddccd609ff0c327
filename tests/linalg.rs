//! The products of src/numerics/linalg.rs against a naive triple loop, and the product-FLOP
//! meter `lcsim throughput` reads: each product adds exactly `2 m n k`. One test function, so
//! that no other product in this binary runs while the meter is read.

mod common;

use common::random_matrix;
use lcsim::numerics::linalg::{gemm, mul, mul_tr, product_flop, tr_mul, Op};
use lcsim::system::learner::Mlp;
use nalgebra::DMatrix;
use std::sync::Mutex;

/// The FLOP counter is one per process: the tests that read it take turns.
static COUNTER: Mutex<()> = Mutex::new(());

/// `a b` by the definition.
fn naive(a: &DMatrix<f64>, b: &DMatrix<f64>) -> DMatrix<f64> {
    DMatrix::from_fn(a.nrows(), b.ncols(), |i, j| {
        (0..a.ncols()).map(|k| a[(i, k)] * b[(k, j)]).sum()
    })
}

#[test]
fn products_match_the_definition_and_count_2mnk_flop_each() {
    let _turn = COUNTER.lock().unwrap();
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

/// The meta-learner keeps nalgebra's products (its arithmetic) and counts them: a gradient
/// on P points is the forward pass, the weight gradients and the backward products into
/// every hidden layer, `2 P (2 sum_l n_out n_in + sum_{l >= 1} n_out n_in)`; the
/// Hessian-vector product (R-operator) adds two products for each of them.
#[test]
fn the_meta_learners_products_are_counted() {
    let _turn = COUNTER.lock().unwrap();
    let sizes = vec![2, 5, 4, 3];
    let mlp = Mlp::new(sizes.clone()).unwrap();
    let p = 6;
    let phi = random_matrix(mlp.num_params(), 1, 3, -0.5, 0.5);
    let x = random_matrix(2, p, 4, -1.0, 1.0);
    let y = random_matrix(3, p, 5, -1.0, 1.0);
    let layers: Vec<usize> = sizes.windows(2).map(|w| w[0] * w[1]).collect();
    let all: usize = layers.iter().sum();
    let gradient = (2 * p * (2 * all + (all - layers[0]))) as u64;
    let before = product_flop();
    mlp.gradient(phi.as_slice(), &x, &y).unwrap();
    assert_eq!(product_flop() - before, gradient, "gradient");
    let v = random_matrix(mlp.num_params(), 1, 6, -0.5, 0.5);
    let before = product_flop();
    mlp.hvp(phi.as_slice(), &x, &y, v.as_slice()).unwrap();
    assert_eq!(
        product_flop() - before,
        3 * gradient,
        "gradient and Hessian-vector product"
    );
}
