//! `lcsim throughput`: training samples/s over the first mini-batches at each thread count,
//! the GFLOP/s of the batched controlled residual (forward `(W; D) s(v)` and feedback
//! `(W; D)^T psi`: `4 n_h (n_h + n_y)` flop per sample) and this machine's dgemm peak.

use crate::config::Config;
use crate::control::CoupledSystem;
use crate::error::{invalid, Result};
use crate::numerics::linalg::dgemm_gflops;
use crate::numerics::rng::Rng;
use crate::train::{load_split, time_batches, TrainingState};
use nalgebra::DMatrix;
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

/// Runs the timings and hands each line of the report to `say` as soon as it is measured.
pub fn throughput(s: &ThroughputJob, mut say: impl FnMut(String)) -> Result<()> {
    let config = &s.config;
    if s.batches == 0 {
        return Err(invalid("--batches", 0, "an integer >= 1"));
    }
    let data = load_split(&config.data)?;
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
    say(format!(
        "lcsim {} throughput: {} on {}, {} {} -> {:?} -> {}, batch {}, solver {} (chunk {}, stability check {}, fallback {:?}), {} batches per thread count",
        env!("CARGO_PKG_VERSION"),
        config.method.name.name(),
        config.data.source.name(),
        format!("{:?}", config.model.kind).to_lowercase(),
        net.n_x(),
        config.model.hidden,
        net.n_y(),
        t.batch_size,
        config.solver.method.name(),
        config.solver.accelerated.chunk,
        config.solver.accelerated.stability.enabled,
        config.solver.accelerated.fallback,
        s.batches,
    ));
    for &threads in &s.threads {
        let m = time_batches(config, &data, fresh()?, s.batches, threads)?;
        say(format!(
            "  training, {} thread(s): {:.0} samples/s ({} samples in {:.2} s; mean steps {:.1}, unconverged {:.2}%)",
            m.threads,
            m.samples_per_second(),
            m.samples,
            m.seconds,
            m.mean_steps,
            100.0 * m.fraction_unconverged,
        ));
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
    Ok(())
}
