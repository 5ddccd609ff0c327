//! `lcsim throughput`, a roofline report: training samples/s over the first mini-batches at
//! each thread count; the product FLOPs per sample actually done there (every matrix
//! product counts `2 m n k`, [`product_flop`]: the iterations each solve took, the stability
//! checks, certificates and fallbacks, the update), the GFLOP/s they ran at and the fraction
//! of this machine's dgemm peak measured in the same run; and the batched controlled residual
//! (forward `(W; D) s(v)` and feedback `(W; D)^T psi`: `4 n_h (n_h + n_y)` flop per sample)
//! as a kernel on its own. Elementwise work (rates, slopes, the stopping test) is not
//! counted as FLOPs: it is the time the products leave unexplained.

use crate::config::Config;
use crate::control::CoupledSystem;
use crate::error::{invalid, Result};
use crate::numerics::linalg::{dgemm_gflops, product_flop};
use crate::numerics::rng::Rng;
use crate::train::{load_split, time_batches, TrainingState};
use nalgebra::DMatrix;
use serde::Serialize;
use std::time::Instant;

/// What to time.
#[derive(Clone, Debug)]
pub struct ThroughputJob {
    pub config: Config,
    /// Mini-batches timed per thread count (>= 1).
    pub batches: usize,
    /// Thread counts (0 = all cores).
    pub threads: Vec<usize>,
}

/// Everything `lcsim throughput` measured, in one run.
#[derive(Clone, Debug, Serialize)]
pub struct ThroughputReport {
    pub lcsim_version: String,
    pub method: String,
    pub data: String,
    pub model: String,
    pub sizes: Vec<usize>,
    pub batch_size: usize,
    pub solver: String,
    pub batches: usize,
    /// One row per thread count, in the order asked.
    pub training: Vec<TrainingThroughput>,
    pub residual_kernel: KernelThroughput,
    /// `2 n^3 / time` of one 2048 x 2048 product on one thread (faer), best of 3.
    pub dgemm_peak_gflops: f64,
}

/// Training throughput at one thread count.
#[derive(Clone, Debug, Serialize)]
pub struct TrainingThroughput {
    pub threads: usize,
    pub samples: usize,
    pub seconds: f64,
    pub samples_per_second: f64,
    /// Mean steps (iterations) of the controlled or adjoint solves.
    pub mean_steps: f64,
    pub fraction_unconverged: f64,
    /// Product FLOPs per training sample, counted while training.
    pub product_mflop_per_sample: f64,
    /// Product FLOPs per second of wall time.
    pub gflops: f64,
    /// `gflops / (threads * dgemm_peak_gflops)`.
    pub fraction_of_peak: f64,
}

/// The batched controlled residual on `samples` samples, one thread.
#[derive(Clone, Debug, Serialize)]
pub struct KernelThroughput {
    pub samples: usize,
    /// Median of 200 evaluations.
    pub median_us: f64,
    pub gflops: f64,
    pub fraction_of_peak: f64,
}

/// Runs the timings; hands a line to `say` as each one is measured, and returns the report.
pub fn throughput(s: &ThroughputJob, mut say: impl FnMut(String)) -> Result<ThroughputReport> {
    let config = &s.config;
    if s.batches == 0 {
        return Err(invalid("--batches", 0, "an integer >= 1"));
    }
    for &threads in &s.threads {
        crate::error::ensure_thread_count("--threads", threads)?;
    }
    config.check_resources()?;
    let data = load_split(config)?;
    let t = &config.training;
    let per_epoch = data.train.len().div_ceil(t.batch_size);
    let fresh = || {
        TrainingState::new(
            config,
            data.train.n_inputs(),
            data.train.n_classes,
            per_epoch,
        )
    };
    let net = fresh()?.net;
    let model = format!("{:?}", config.model.kind).to_lowercase();
    let sizes: Vec<usize> = std::iter::once(net.n_x())
        .chain(config.model.hidden.iter().copied())
        .chain(std::iter::once(net.n_y()))
        .collect();
    say(format!(
        "lcsim {} throughput: {} on {}, {model} {:?}, batch {}, solver {} (chunk {}, stability check {}, fallback {:?}), {} batches per thread count",
        env!("CARGO_PKG_VERSION"),
        config.method.name.name(),
        config.data.source.name(),
        sizes,
        t.batch_size,
        config.solver.method.name(),
        config.solver.accelerated.chunk,
        config.solver.accelerated.stability.enabled,
        config.solver.accelerated.fallback,
        s.batches,
    ));
    let mut timed = Vec::new();
    for &threads in &s.threads {
        let before = product_flop();
        let m = time_batches(config, &data, fresh()?, s.batches, threads)?;
        let flop = (product_flop() - before) as f64;
        say(format!(
            "  training, {} thread(s): {:.0} samples/s ({} samples in {:.2} s; mean steps {:.1}, unconverged {:.2}%); products {:.2} MFLOP/sample at {:.1} GFLOP/s",
            m.threads,
            m.samples_per_second(),
            m.samples,
            m.seconds,
            m.mean_steps,
            100.0 * m.fraction_unconverged,
            flop / m.samples as f64 / 1e6,
            flop / m.seconds / 1e9,
        ));
        timed.push((m, flop));
    }
    // The batched controlled residual on `chunk` samples (what one solver iteration costs).
    let b = config.solver.accelerated.chunk.min(data.train.len());
    let idx: Vec<usize> = (0..b).collect();
    let (x, targets) = data.train.batch(&idx);
    let objective = config.objective(t.batch_size);
    let sys = CoupledSystem::new(
        &net,
        x,
        targets,
        objective.clone(),
        config.dynamics.tau_v,
        Some(config.controller_settings()),
    )?;
    let mut rng = Rng::seed_from_u64(1);
    let z = DMatrix::from_fn(sys.dim(), b, |_, _| rng.uniform_range(-0.5, 0.5));
    let mut times: Vec<f64> = (0..200)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(sys.residual(&z));
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let (n_h, n_y) = (net.n_h() as f64, net.n_y() as f64);
    let kernel = 4.0 * n_h * (n_h + n_y) * b as f64 / median / 1e9;
    let peak = dgemm_gflops(2048, 3);
    say(format!(
        "  batched controlled residual, {b} samples, 1 thread: {:.1} us, {kernel:.1} GFLOP/s",
        median * 1e6
    ));
    say(format!(
        "  dgemm 2048 x 2048 x 2048 (faer), 1 thread: {peak:.1} GFLOP/s; kernel at {:.0}% of it",
        100.0 * kernel / peak
    ));
    let training: Vec<TrainingThroughput> = timed
        .into_iter()
        .map(|(m, flop)| {
            let gflops = flop / m.seconds / 1e9;
            TrainingThroughput {
                threads: m.threads,
                samples: m.samples,
                seconds: m.seconds,
                samples_per_second: m.samples_per_second(),
                mean_steps: m.mean_steps,
                fraction_unconverged: m.fraction_unconverged,
                product_mflop_per_sample: flop / m.samples as f64 / 1e6,
                gflops,
                fraction_of_peak: gflops / (m.threads as f64 * peak),
            }
        })
        .collect();
    for row in &training {
        say(format!(
            "  training, {} thread(s): products at {:.0}% of {} x the dgemm peak",
            row.threads,
            100.0 * row.fraction_of_peak,
            row.threads
        ));
    }
    Ok(ThroughputReport {
        lcsim_version: env!("CARGO_PKG_VERSION").to_string(),
        method: config.method.name.name().to_string(),
        data: config.data.source.name().to_string(),
        model,
        sizes,
        batch_size: t.batch_size,
        solver: config.solver.method.name().to_string(),
        batches: s.batches,
        training,
        residual_kernel: KernelThroughput {
            samples: b,
            median_us: median * 1e6,
            gflops: kernel,
            fraction_of_peak: kernel / peak,
        },
        dgemm_peak_gflops: peak,
    })
}
