//! Cost of one steady-state solve of the free and of the LCP-DI controlled rate network
//! (n_x = 784, recurrent n_h = 256, n_y = 10; one sample) per solver method, and of one
//! batched evaluation of the residual and its Jacobian-vector product (B = 64).
//!
//! Run with `cargo bench --bench steady_state` (see benches/README.md). Before timing, every
//! configuration is solved once and its record (termination, residual, steps, RHS
//! evaluations) is printed to stderr; a configuration that does not converge is not timed.

use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode};
use lcsim::control::{ControllerSettings, CoupledSystem, LossScale, Objective};
use lcsim::numerics::activation::Activation;
use lcsim::numerics::rng::Rng;
use lcsim::solve::{
    solve_batch, solve_steady_state, EulerSettings, SolverMethod, SolverSettings, Termination,
};
use lcsim::system::loss::{one_hot, Loss};
use lcsim::system::rate::{RateNetwork, Topology};
use nalgebra::DMatrix;
use std::time::{Duration, Instant};

const N_X: usize = 784;
const N_H: usize = 256;
const N_Y: usize = 10;
/// Batch size of the objective (the loss scale is 1/64, as in a training batch) and of the
/// batched kernel benchmark.
const BATCH: usize = 64;
const NET_SEED: u64 = 1;
const DATA_SEED: u64 = 2024;
/// Label of the single-sample target.
const LABEL: usize = 3;

/// The network of every benchmark.
fn network() -> RateNetwork {
    RateNetwork::new(
        N_X,
        Topology::Recurrent { hidden: N_H },
        N_Y,
        Activation::Tanh,
        NET_SEED,
    )
    .expect("valid network sizes")
}

/// `rows x cols` entries uniform in [lo, hi), drawn column by column.
fn uniform(rng: &mut Rng, rows: usize, cols: usize, lo: f64, hi: f64) -> DMatrix<f64> {
    DMatrix::from_fn(rows, cols, |_, _| rng.uniform_range(lo, hi))
}

/// The system of `batch` samples: pseudo-random pixels in [0, 1), labels 3, 4, 5, ...
fn system(
    net: &RateNetwork,
    batch: usize,
    controller: Option<ControllerSettings>,
) -> CoupledSystem<'_, RateNetwork> {
    let mut rng = Rng::seed_from_u64(DATA_SEED);
    let inputs = uniform(&mut rng, N_X, batch, 0.0, 1.0);
    let labels: Vec<usize> = (0..batch).map(|j| (LABEL + j) % N_Y).collect();
    CoupledSystem::new(
        net,
        inputs,
        one_hot(&labels, N_Y),
        Objective::new(Loss::CrossEntropy, LossScale::BatchMean, BATCH),
        1.0,
        controller,
    )
    .expect("valid system")
}

/// The solver configurations: (benchmark id, settings).
fn configurations() -> Vec<(&'static str, SolverSettings)> {
    let with = |method: SolverMethod, dt: f64| SolverSettings {
        method,
        euler: EulerSettings { dt },
        ..SolverSettings::default()
    };
    vec![
        ("euler_dt0.2", with(SolverMethod::Euler, 0.2)),
        ("euler_dt1.0", with(SolverMethod::Euler, 1.0)),
        ("tsit45", with(SolverMethod::Tsit45, 0.2)),
        ("bdf", with(SolverMethod::Bdf, 0.2)),
        ("esdirk34", with(SolverMethod::Esdirk34, 0.2)),
        ("tr-bdf2", with(SolverMethod::TrBdf2, 0.2)),
        ("anderson", with(SolverMethod::Anderson, 1.0)),
        ("newton-krylov", with(SolverMethod::NewtonKrylov, 1.0)),
    ]
}

/// Solves each configuration once, prints its record and times the converged ones.
fn bench_system(c: &mut Criterion, group_name: &str, controller: Option<ControllerSettings>) {
    let net = network();
    let sys = system(&net, 1, controller).sample(0);
    let z0 = sys.initial_state();
    eprintln!(
        "\n[{group_name}] dimension {}, atol 1e-6, rtol 1e-6 on |r_i|",
        sys.dim()
    );
    let mut group = c.benchmark_group(group_name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (id, opts) in configurations() {
        opts.validate().expect("valid options");
        let start = Instant::now();
        let rec = solve_steady_state(&sys, &z0, &opts, &[]);
        let elapsed = start.elapsed();
        eprintln!(
            "[{group_name}/{id}] termination {}, residual {:.3e} (scaled {:.3}), t {:.1}, \
             steps {}, rhs_evals {}, jvp_evals {}, first solve {:.1} ms",
            rec.termination.name(),
            rec.residual,
            rec.scaled_residual,
            rec.time,
            rec.steps,
            rec.rhs_evals,
            rec.jvp_evals,
            elapsed.as_secs_f64() * 1e3,
        );
        if !rec.converged() {
            eprintln!(
                "[{group_name}/{id}] SKIPPED: did not converge ({}{})",
                rec.termination.name(),
                match &rec.termination {
                    Termination::SolverError(m) => format!(": {m}"),
                    _ => String::new(),
                }
            );
            continue;
        }
        group.bench_function(id, |b| {
            b.iter(|| solve_steady_state(black_box(&sys), black_box(&z0), &opts, &[]))
        });
    }
    group.finish();
}

fn free(c: &mut Criterion) {
    bench_system(c, "steady_state_free", None);
}

fn controlled(c: &mut Criterion) {
    bench_system(
        c,
        "steady_state_controlled",
        Some(ControllerSettings::default()),
    );
}

/// One evaluation of `residual` and `residual_jvp` of the controlled system on random
/// states (dimension 532) for a batch of 64 and, for comparison, for one sample.
fn kernels(c: &mut Criterion) {
    let net = network();
    let mut group = c.benchmark_group("kernel_controlled");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for batch in [1, BATCH] {
        let sys = system(&net, batch, Some(ControllerSettings::default()));
        let mut rng = Rng::seed_from_u64(DATA_SEED + 1);
        let z = uniform(&mut rng, sys.dim(), batch, -0.5, 0.5);
        let dz = uniform(&mut rng, sys.dim(), batch, -1.0, 1.0);
        eprintln!("\n[kernel_controlled] states {} x {}", z.nrows(), z.ncols());
        group.bench_function(format!("residual_b{batch}"), |b| {
            b.iter(|| sys.residual(black_box(&z)))
        });
        group.bench_function(format!("residual_jvp_b{batch}"), |b| {
            b.iter(|| sys.residual_jvp(black_box(&z), black_box(&dz)))
        });
    }
    group.finish();
}

/// A whole training batch: the 64 controlled solves of the batch from the free equilibrium
/// (as `method.controlled_start = "free"`), on one thread, per method; the free
/// equilibrium comes from an Euler dt = 1 relaxation outside the timing.
fn batch(c: &mut Criterion) {
    let net = network();
    let sys = system(&net, BATCH, Some(ControllerSettings::default()));
    let free = sys.free();
    let euler = SolverSettings {
        method: SolverMethod::Euler,
        euler: EulerSettings { dt: 1.0 },
        ..SolverSettings::default()
    };
    let phi0 = free.phi(&solve_batch(&free, &free.initial_state(), &euler).states);
    let z0 = sys.state_with_phi(&phi0).expect("shapes match");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("one thread");
    let mut group = c.benchmark_group("steady_state_batch64");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut configs = configurations();
    configs.retain(|(id, _)| ["euler_dt1.0", "tsit45", "anderson", "newton-krylov"].contains(id));
    configs.push(("anderson_no_stability_check", {
        let mut o = configs[2].1.clone();
        o.accelerated.stability.enabled = false;
        o
    }));
    for (id, opts) in configs {
        let solve = || pool.install(|| solve_batch(&sys, &z0, &opts));
        let start = Instant::now();
        let out = solve();
        let rhs: usize = out.records.iter().map(|r| r.rhs_evals).sum();
        let jvp: usize = out.records.iter().map(|r| r.jvp_evals).sum();
        let fallback = out
            .records
            .iter()
            .filter(|r| r.fallback_from.is_some())
            .count();
        eprintln!(
            "[steady_state_batch64/{id}] converged {:.3}, fallback {fallback}, max residual {:.2e}, \
             mean steps {:.1}, rhs_evals/sample {:.1}, jvp_evals/sample {:.1}, first solve {:.1} ms",
            out.fraction_converged(),
            out.max_residual(),
            out.mean_steps(),
            rhs as f64 / BATCH as f64,
            jvp as f64 / BATCH as f64,
            start.elapsed().as_secs_f64() * 1e3,
        );
        group.bench_function(id, |b| b.iter(|| black_box(solve())));
    }
    group.finish();
}

criterion_group!(benches, free, controlled, kernels, batch);
criterion_main!(benches);
