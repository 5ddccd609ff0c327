//! lcsim's own tanh (`lcsim::numerics::activation::tanh`) against std's `f64::tanh` (libm),
//! both mapped over the same 4096 inputs in one run: uniform in [-4, 4) in random order (both
//! branches, unpredictable), and each branch alone (|x| < 0.625: Cephes' rational form;
//! 0.625 <= |x| < 4: `1 - 2 / (exp(2|x|) + 1)`).
use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use lcsim::numerics::activation::tanh;
use lcsim::numerics::rng::Rng;
use std::time::Duration;

const N: usize = 4096;

/// N inputs, |x| uniform in [lo, hi) with a random sign, from a fixed seed.
fn inputs(lo: f64, hi: f64, seed: u64) -> Vec<f64> {
    let mut rng = Rng::seed_from_u64(seed);
    (0..N)
        .map(|_| {
            let a = rng.uniform_range(lo, hi);
            if rng.uniform() < 0.5 {
                -a
            } else {
                a
            }
        })
        .collect()
}

fn map(out: &mut [f64], x: &[f64], f: impl Fn(f64) -> f64) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f(v);
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("tanh");
    // Many short samples (~0.5 ms, flat): most fit in one scheduler slice, so the median stays
    // near the undisturbed time even while other jobs share the cores.
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(400);
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_millis(200));
    g.throughput(Throughput::Elements(N as u64));
    let mut out = vec![0.0; N];
    for (name, x) in [
        ("mixed", inputs(0.0, 4.0, 1)),
        ("rational", inputs(0.0, 0.625, 2)),
        ("exp", inputs(0.625, 4.0, 3)),
    ] {
        g.bench_function(format!("lcsim/{name}"), |b| {
            b.iter(|| map(black_box(&mut out), black_box(&x), tanh))
        });
        g.bench_function(format!("std/{name}"), |b| {
            b.iter(|| map(black_box(&mut out), black_box(&x), f64::tanh))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
