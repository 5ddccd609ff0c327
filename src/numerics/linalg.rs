//! Matrix products of the batched kernels, computed by faer on nalgebra storage.
//!
//! Measured on this project's machine (benches/kernels.rs, one thread): for 256 x 256 times
//! 256 x 64, nalgebra's `gemm` takes 1.3x faer's time and its transposed product
//! (`tr_mul`, `gemm_tr`) 28x; faer reaches ~90% of its own large-size dgemm peak there.
//! Every product here runs on the calling thread (`Par::Seq`): parallelism is across samples.

use crate::numerics::real::Real;
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use nalgebra::{DMatrix, DMatrixView, Dyn, Matrix, RawStorage, RawStorageMut};
use std::sync::atomic::{AtomicU64, Ordering};

/// Floating-point operations of every product computed here, `2 m n k` each, over all
/// threads since the process started: what `lcsim throughput` divides by the time.
static PRODUCT_FLOP: AtomicU64 = AtomicU64::new(0);

/// The product FLOPs counted so far ([`PRODUCT_FLOP`]).
pub fn product_flop() -> u64 {
    PRODUCT_FLOP.load(Ordering::Relaxed)
}

/// Counts one `m x k` times `k x n` product (done here, or elsewhere by code that keeps its own
/// arithmetic, as the meta-learner's nalgebra products).
pub fn count_product(m: usize, n: usize, k: usize) {
    PRODUCT_FLOP.fetch_add(2 * (m * n * k) as u64, Ordering::Relaxed);
}

/// A faer view of any nalgebra matrix or view (strides kept).
fn view<'a, T: Real, S: RawStorage<T, Dyn, Dyn>>(m: &'a Matrix<T, Dyn, Dyn, S>) -> MatRef<'a, T> {
    let (rs, cs) = m.strides();
    // SAFETY: nalgebra guarantees that `ptr + i * rs + j * cs` is a valid element for every
    // i < nrows, j < ncols, borrowed for 'a.
    unsafe { MatRef::from_raw_parts(m.as_ptr(), m.nrows(), m.ncols(), rs as isize, cs as isize) }
}

fn view_mut<'a, T: Real, S: RawStorageMut<T, Dyn, Dyn>>(
    m: &'a mut Matrix<T, Dyn, Dyn, S>,
) -> MatMut<'a, T> {
    let (rs, cs) = m.strides();
    let (r, c) = (m.nrows(), m.ncols());
    // SAFETY: as in `view`, and the mutable borrow is exclusive for 'a.
    unsafe { MatMut::from_raw_parts_mut(m.as_mut_ptr(), r, c, rs as isize, cs as isize) }
}

/// How the left factor enters a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `a`
    Plain,
    /// `a^T`
    Transposed,
}

/// `c = alpha op(a) b + (c if accumulate)`, in f64 or f32.
pub fn gemm<T: Real, S: RawStorageMut<T, Dyn, Dyn>>(
    c: &mut Matrix<T, Dyn, Dyn, S>,
    alpha: T,
    a: DMatrixView<'_, T>,
    op: Op,
    b: DMatrixView<'_, T>,
    accumulate: bool,
) {
    let a = match op {
        Op::Plain => view(&a),
        Op::Transposed => view(&a).transpose(),
    };
    let accum = if accumulate {
        Accum::Add
    } else {
        Accum::Replace
    };
    count_product(a.nrows(), b.ncols(), a.ncols());
    matmul(view_mut(c), accum, a, view(&b), alpha, Par::Seq);
}

/// `a b`.
pub fn mul(a: DMatrixView<'_, f64>, b: DMatrixView<'_, f64>) -> DMatrix<f64> {
    let mut c = DMatrix::zeros(a.nrows(), b.ncols());
    gemm(&mut c, 1.0, a, Op::Plain, b, false);
    c
}

/// `a^T b`.
pub fn tr_mul(a: DMatrixView<'_, f64>, b: DMatrixView<'_, f64>) -> DMatrix<f64> {
    let mut c = DMatrix::zeros(a.ncols(), b.ncols());
    gemm(&mut c, 1.0, a, Op::Transposed, b, false);
    c
}

/// `a b^T`.
pub fn mul_tr(a: DMatrixView<'_, f64>, b: DMatrixView<'_, f64>) -> DMatrix<f64> {
    let mut c = DMatrix::zeros(a.nrows(), b.nrows());
    count_product(a.nrows(), b.nrows(), a.ncols());
    matmul(
        view_mut(&mut c),
        Accum::Replace,
        view(&a),
        view(&b).transpose(),
        1.0,
        Par::Seq,
    );
    c
}

/// Achieved GFLOP/s of one `n x n` times `n x n` product on the calling thread (the dgemm
/// peak of this library and machine): the best of `repeats` timed products.
pub fn dgemm_gflops(n: usize, repeats: usize) -> f64 {
    let a = DMatrix::from_fn(n, n, |i, j| ((i * 7 + j * 3) % 11) as f64 * 0.1);
    let b = DMatrix::from_fn(n, n, |i, j| ((i * 5 + j) % 13) as f64 * 0.1);
    let mut c = DMatrix::zeros(n, n);
    let best = (0..repeats.max(1))
        .map(|_| {
            let start = std::time::Instant::now();
            gemm(&mut c, 1.0, a.as_view(), Op::Plain, b.as_view(), false);
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (n as f64).powi(3) / best / 1e9
}
