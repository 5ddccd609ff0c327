//! Matrix-product paths for the batched kernels: nalgebra's gemm (matrixmultiply) against
//! faer's matmul, at the shapes of the LCP-DI RNN (256 x 256 times 256 x B) and at a large
//! square size (the dgemm peak).
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use nalgebra::DMatrix;
use std::time::Duration;

fn faer_gemm(c: &mut DMatrix<f64>, a: &DMatrix<f64>, b: &DMatrix<f64>) {
    let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
    let av = MatRef::from_column_major_slice(a.as_slice(), m, k);
    let bv = MatRef::from_column_major_slice(b.as_slice(), k, n);
    let cv = MatMut::from_column_major_slice_mut(c.as_mut_slice(), m, n);
    matmul(cv, Accum::Replace, av, bv, 1.0, Par::Seq);
}

fn faer_gemm_tn(c: &mut DMatrix<f64>, a: &DMatrix<f64>, b: &DMatrix<f64>) {
    let (k, m, n) = (a.nrows(), a.ncols(), b.ncols());
    let av = MatRef::from_column_major_slice(a.as_slice(), k, m);
    let bv = MatRef::from_column_major_slice(b.as_slice(), k, n);
    let cv = MatMut::from_column_major_slice_mut(c.as_mut_slice(), m, n);
    matmul(cv, Accum::Replace, av.transpose(), bv, 1.0, Par::Seq);
}

fn shapes(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm");
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_secs(1));
    for &(m, k, n) in &[
        (256, 256, 64),
        (256, 256, 16),
        (266, 256, 64),
        (256, 256, 1),
        (1024, 1024, 64),
        (2048, 2048, 2048),
    ] {
        let a = DMatrix::from_fn(m, k, |i, j| ((i * 7 + j * 3) % 11) as f64 * 0.1);
        let at = a.transpose();
        let b = DMatrix::from_fn(k, n, |i, j| ((i * 5 + j) % 13) as f64 * 0.1);
        let mut out = DMatrix::zeros(m, n);
        let flops = 2.0 * (m * k * n) as f64;
        let id = format!("{m}x{k}x{n}");
        g.bench_function(format!("nalgebra/{id}"), |bch| {
            bch.iter(|| out.gemm(1.0, black_box(&a), black_box(&b), 0.0))
        });
        g.bench_function(format!("faer/{id}"), |bch| {
            bch.iter(|| faer_gemm(&mut out, black_box(&a), black_box(&b)))
        });
        g.bench_function(format!("nalgebra_tn/{id}"), |bch| {
            bch.iter(|| out.gemm_tr(1.0, black_box(&at), black_box(&b), 0.0))
        });
        g.bench_function(format!("faer_tn/{id}"), |bch| {
            bch.iter(|| faer_gemm_tn(&mut out, black_box(&at), black_box(&b)))
        });
        eprintln!("{id}: {flops:.3e} flop");
    }
    g.finish();
}

criterion_group!(benches, shapes);
criterion_main!(benches);
