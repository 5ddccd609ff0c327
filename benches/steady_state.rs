//! Cost of one steady-state solve of the free and of the LCP-DI controlled rate network
//! (n_x = 784, recurrent n_h = 256, n_y = 10; one sample) per solver method, and of one
//! batched evaluation of the residual and its Jacobian-vector product (B = 64).
//!
//! Run with `cargo bench --bench steady_state` (see benches/README.md). Before timing, every
//! configuration is solved once and its record (termination, residual, steps, RHS
//! evaluations) is printed to stderr; a configuration that does not converge is not timed.

use criterion::{black_box, criterion_group, criterion_main, Criterion, SamplingMode};
use lcsim::activation::Activation;
use lcsim::loss::{one_hot, Loss};
use lcsim::model::rate::{RateNetwork, Topology};
use lcsim::rng::Rng;
use lcsim::steady_state::{
    solve_steady_state, SolverMethod, SteadyStateOptions, Termination, VectorField,
};
use lcsim::system::{ControllerSettings, CoupledSystem, LossScale, Objective};
use nalgebra::DMatrix;
use std::cell::Cell;
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

/// The solver configurations: (benchmark id, options).
fn configurations() -> Vec<(&'static str, SteadyStateOptions)> {
    let with = |method: SolverMethod, dt: f64| SteadyStateOptions {
        method,
        dt,
        ..SteadyStateOptions::default()
    };
    vec![
        ("euler_dt0.2", with(SolverMethod::Euler, 0.2)),
        ("euler_dt1.0", with(SolverMethod::Euler, 1.0)),
        ("tsit45", with(SolverMethod::Tsit45, 0.2)),
        ("bdf", with(SolverMethod::Bdf, 0.2)),
        ("esdirk34", with(SolverMethod::Esdirk34, 0.2)),
        ("tr-bdf2", with(SolverMethod::TrBdf2, 0.2)),
    ]
}

/// A vector field that counts its Jacobian-vector products (used only in the untimed
/// first solve: the implicit methods assemble a dense Jacobian from `dim` of them, which
/// the record's `rhs_evals` does not include).
struct CountingJvp<'a, F: VectorField> {
    inner: &'a F,
    jvps: Cell<usize>,
}

impl<F: VectorField> VectorField for CountingJvp<'_, F> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn time_constants(&self) -> Vec<f64> {
        self.inner.time_constants()
    }
    fn residual(&self, z: &DMatrix<f64>) -> DMatrix<f64> {
        self.inner.residual(z)
    }
    fn residual_jvp(&self, z: &DMatrix<f64>, dz: &DMatrix<f64>) -> DMatrix<f64> {
        self.jvps.set(self.jvps.get() + 1);
        self.inner.residual_jvp(z, dz)
    }
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
        let counted = CountingJvp {
            inner: &sys,
            jvps: Cell::new(0),
        };
        let start = Instant::now();
        let rec = solve_steady_state(&counted, &z0, &opts, &[]);
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
            counted.jvps.get(),
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

criterion_group!(benches, free, controlled, kernels);
criterion_main!(benches);
