//! Cost of the trajectory path (`lcsim simulate`, issue 16 item 5): one LCP-DI switch-on
//! trajectory of the MNIST RNN 784-256-10 per sample (free from rest over [0, 50], controller on
//! at t_on = 50 until t_end = 150, 302 output times), Tsit45 at rtol 1e-6, atol 1e-8, alpha 0.1,
//! k_i 1, k_p 0, loss scale 1/64, for batches of 1, 16 and 64 MNIST test samples (in chunks of
//! `solver.chunk` = 16 samples integrated together, and 64 in one chunk), on one thread.
//!
//! The weights: the .npz named by `LCSIM_TRAJ_PARAMS` (W, b, E, c, D, d, e.g. a run's
//! params.npz), else a fresh network (seed 0). MNIST from `LCSIM_MNIST_DIR`, else
//! `../shared/data/mnist10k`. benches/lsoda_reference.py integrates the same trajectories with
//! scipy's LSODA; benches/README.md ("Trajectory path against LSODA") has the commands.

use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode};
use lcsim::control::{ControllerSettings, CoupledSystem, LossScale, Objective};
use lcsim::numerics::activation::Activation;
use lcsim::solve::{SolverMethod, SolverSettings};
use lcsim::studies::simulate::{simulate_switch_on, SimulationSettings};
use lcsim::system::loss::Loss;
use lcsim::system::rate::{RateNetwork, Topology};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const T_ON: f64 = 50.0;
const T_END: f64 = 150.0;

fn network() -> RateNetwork {
    match std::env::var_os("LCSIM_TRAJ_PARAMS") {
        Some(p) => lcsim::io::interop::load_params(&PathBuf::from(p), false, Activation::Tanh)
            .expect("LCSIM_TRAJ_PARAMS: an .npz with W, b, E, c, D, d"),
        None => RateNetwork::new(
            784,
            Topology::Recurrent { hidden: 256 },
            10,
            Activation::Tanh,
            0,
        )
        .expect("valid sizes"),
    }
}

fn settings() -> SolverSettings {
    let mut s = SolverSettings {
        method: SolverMethod::Tsit45,
        ..SolverSettings::default()
    };
    s.adaptive.rtol = 1e-6;
    s.adaptive.atol = 1e-8;
    s.stop.max_steps = 1_000_000;
    s
}

fn bench(c: &mut Criterion) {
    let dir = std::env::var_os("LCSIM_MNIST_DIR")
        .map_or_else(|| PathBuf::from("../shared/data/mnist10k"), PathBuf::from);
    let data = lcsim::data::mnist(&dir, Some(1), Some(64)).expect("MNIST (LCSIM_MNIST_DIR)");
    let net = network();
    let times = SimulationSettings {
        t_on: T_ON,
        t_end: T_END,
        ..SimulationSettings::default()
    }
    .output_times();
    let opts = settings();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let mut group = c.benchmark_group("trajectory");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(5));
    // (samples, solver.chunk): the default chunk of 16 samples, and one chunk of all 64.
    for (batch, chunk) in [(1usize, 16usize), (16, 16), (64, 16), (64, 64)] {
        let mut opts = opts.clone();
        opts.accelerated.chunk = chunk;
        let samples: Vec<usize> = (0..batch).collect();
        let (x, targets) = data.test.batch(&samples);
        let sys = CoupledSystem::new(
            &net,
            x,
            targets,
            Objective::new(Loss::CrossEntropy, LossScale::BatchMean, 64),
            1.0,
            Some(ControllerSettings::default()),
        )
        .expect("valid system");
        let start = Instant::now();
        let sim = pool
            .install(|| simulate_switch_on(&sys, &opts, &times, T_ON))
            .expect("simulation");
        let (mut rhs, mut steps) = (0, 0);
        for tr in &sim.trajectories {
            for seg in [&tr.free, &tr.controlled].into_iter().flatten() {
                rhs += seg.rhs_evals;
                steps += seg.steps;
            }
        }
        eprintln!(
            "trajectory/{batch}/chunk{chunk}: first run {:.1} ms ({:.2} ms per sample), {:.0} steps and {:.0} RHS evaluations per sample",
            start.elapsed().as_secs_f64() * 1e3,
            start.elapsed().as_secs_f64() * 1e3 / batch as f64,
            steps as f64 / batch as f64,
            rhs as f64 / batch as f64
        );
        group.bench_function(format!("tsit45_batch{batch}_chunk{chunk}"), |b| {
            b.iter(|| pool.install(|| black_box(simulate_switch_on(&sys, &opts, &times, T_ON))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
