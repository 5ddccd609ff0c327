//! `lcsim throughput`, a roofline report for any system (`model.kind` rnn, ff, conv, deq,
//! meta): training samples/s over the first mini-batches at each thread count; the product
//! FLOPs per sample actually done there (every matrix product counts `2 m n k`,
//! [`product_flop`]: the iterations each solve took, the stability checks, certificates and
//! fallbacks, the update), the GFLOP/s they ran at and the fraction of this machine's dgemm
//! peak measured in the same run; the batched controlled residual as a kernel on its own (its
//! products counted the same way: for the rate net `4 n_h (n_h + n_y)` flop per sample, the
//! forward `(W; D) s(v)` and feedback `(W; D)^T psi`); and for the conv systems each
//! convolution's three kernels (im2col forward, transpose, weight gradient). Elementwise work
//! (rates, slopes, im2col's copies, the stopping test) is not counted as FLOPs: it is the
//! time the products leave unexplained.

use crate::config::{Config, ModelKind};
use crate::control::CoupledSystem;
use crate::data::Split;
use crate::error::{invalid, Result};
use crate::numerics::conv::Conv2d;
use crate::numerics::linalg::{dgemm_gflops, product_flop};
use crate::numerics::rng::Rng;
use crate::system::EquilibriumSystem;
use crate::train::{load_split, time_batches, Trainable, TrainingState};
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
    /// `model.kind`.
    pub model: String,
    /// The system in words ([`Config::system_text`]).
    pub system: String,
    /// Rate net: n_x, the hidden layers, n_y; conv net: the input, each layer's state rows,
    /// n_y; DEQ: the input, z's rows, n_y; meta: the learner's layers.
    pub sizes: Vec<usize>,
    pub batch_size: usize,
    pub solver: String,
    /// `solver.precision` of the training rows ("f64", "f32"); the residual kernel is f64.
    pub precision: String,
    pub batches: usize,
    /// One row per thread count, in the order asked.
    pub training: Vec<TrainingThroughput>,
    pub residual_kernel: KernelThroughput,
    /// The conv systems: the three kernels of each convolution, on the residual kernel's
    /// samples, one thread (empty for the other systems).
    pub conv_kernels: Vec<ConvKernelThroughput>,
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
    /// Product FLOPs of one evaluation.
    pub mflop: f64,
    pub gflops: f64,
    pub fraction_of_peak: f64,
}

/// One kernel of one convolution ([`Conv2d`]) on `samples` samples, one thread.
#[derive(Clone, Debug, Serialize)]
pub struct ConvKernelThroughput {
    /// The kernel tensor (`W1`, ... of the conv net; `K_enc`, `K1`, `K2` of the DEQ).
    pub layer: String,
    /// `forward` (`W im2col(x)`), `transpose` (`col2im(W^T g)`) or `weight-gradient`
    /// (`g im2col(x)^T`).
    pub kernel: String,
    /// Input and output feature maps (channels, height, width).
    pub input: [usize; 3],
    pub output: [usize; 3],
    pub kernel_size: usize,
    pub stride: usize,
    pub pad: usize,
    pub samples: usize,
    /// Median of [`CONV_REPEATS`] calls.
    pub median_us: f64,
    /// Product FLOPs of one call, `2 out_c (in_c k k) (out_h out_w samples)`.
    pub mflop: f64,
    pub gflops: f64,
    pub fraction_of_peak: f64,
}

/// Calls timed per conv kernel.
pub const CONV_REPEATS: usize = 50;

/// Runs the timings; hands a line to `say` as each one is measured, and returns the report.
pub fn throughput(s: &ThroughputJob, say: impl FnMut(String)) -> Result<ThroughputReport> {
    let config = &s.config;
    if s.batches == 0 {
        return Err(invalid("--batches", 0, "an integer >= 1"));
    }
    for &threads in &s.threads {
        crate::error::ensure_thread_count("--threads", threads)?;
    }
    config.check_resources()?;
    let data = load_split(config)?;
    let per_epoch = data.train.len().div_ceil(config.training.batch_size);
    let (n_x, n_y) = (data.train.n_inputs(), data.train.n_classes);
    let around = |middle: Vec<usize>, input: usize| {
        let mut sizes = vec![input];
        sizes.extend(middle);
        sizes.push(n_y);
        sizes
    };
    match config.model.kind {
        ModelKind::Rnn | ModelKind::Ff => {
            let sizes = around(config.model.hidden.clone(), n_x);
            let fresh = || TrainingState::new(config, n_x, n_y, per_epoch);
            measure(s, &data, sizes, fresh, say)
        }
        ModelKind::Conv => {
            let net = config.conv_net(n_y)?;
            let rows = net.layer_rows().iter().map(|r| r.len()).collect();
            let sizes = around(rows, net.input_dim());
            let fresh = || TrainingState::with_system(config.conv_net(n_y)?, config, per_epoch);
            measure(s, &data, sizes, fresh, say)
        }
        ModelKind::Deq => {
            let net = config.conv_deq(n_y)?;
            let sizes = around(vec![net.feature_rows().len()], net.input_dim());
            let fresh = || TrainingState::with_system(config.conv_deq(n_y)?, config, per_epoch);
            measure(s, &data, sizes, fresh, say)
        }
        ModelKind::Meta => {
            let sizes = config.learner()?.sizes().to_vec();
            let fresh = || TrainingState::new_meta(config, per_epoch);
            measure(s, &data, sizes, fresh, say)
        }
    }
}

/// The timings of [`throughput`] for the system `fresh` starts from.
fn measure<S: Trainable>(
    s: &ThroughputJob,
    data: &Split,
    sizes: Vec<usize>,
    fresh: impl Fn() -> Result<TrainingState<S>>,
    mut say: impl FnMut(String),
) -> Result<ThroughputReport> {
    let config = &s.config;
    let t = &config.training;
    let net = fresh()?.net;
    let model = config.run_kind().to_string();
    say(format!(
        "lcsim {} throughput: {} on {}, {}, sizes {:?}, batch {}, solver {} in {} (chunk {}, stability check {}, fallback {:?}), {} batches per thread count",
        env!("CARGO_PKG_VERSION"),
        config.method.name.name(),
        config.data.source.name(),
        config.system_text(),
        sizes,
        t.batch_size,
        config.solver.method.name(),
        config.solver.precision.name(),
        config.solver.accelerated.chunk,
        config.solver.accelerated.stability.enabled,
        config.solver.accelerated.fallback,
        s.batches,
    ));
    let mut timed = Vec::new();
    for &threads in &s.threads {
        let before = product_flop();
        let m = time_batches(config, data, fresh()?, s.batches, threads)?;
        let flop = (product_flop() - before) as f64;
        say(format!(
            "  training, {} thread(s): {:.1} samples/s ({} samples in {:.2} s; mean steps {:.1}, unconverged {:.2}%); products {:.2} MFLOP/sample at {:.1} GFLOP/s",
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
    let mut random = |rows: usize, cols: usize| {
        DMatrix::from_fn(rows, cols, |_, _| rng.uniform_range(-0.5, 0.5))
    };
    let z = random(sys.dim(), b);
    let (median, flop) = median_time(200, || sys.residual(&z));
    let residual_gflops = flop / median / 1e9;
    say(format!(
        "  batched controlled residual, {b} samples, 1 thread: {:.1} us, {:.3} MFLOP, {residual_gflops:.1} GFLOP/s",
        median * 1e6,
        flop / 1e6
    ));
    let mut conv_timings = Vec::new();
    for (name, conv) in net.convolutions() {
        let weights = random(conv.out_c, conv.patch_len());
        let (x, g) = (random(conv.in_len(), b), random(conv.out_len(), b));
        let kernels = [
            (
                "forward",
                median_time(CONV_REPEATS, || conv.forward(&weights, &x)),
            ),
            (
                "transpose",
                median_time(CONV_REPEATS, || conv.transpose(&weights, &g)),
            ),
            (
                "weight-gradient",
                median_time(CONV_REPEATS, || conv.weight_grad(&x, &g)),
            ),
        ];
        for (kernel, timing) in kernels {
            conv_timings.push((name.clone(), kernel, conv, timing));
        }
    }
    let peak = dgemm_gflops(2048, 3);
    say(format!(
        "  dgemm 2048 x 2048 x 2048 (faer), 1 thread: {peak:.1} GFLOP/s; residual at {:.0}% of it",
        100.0 * residual_gflops / peak
    ));
    let conv_kernels: Vec<ConvKernelThroughput> = conv_timings
        .into_iter()
        .map(|(name, kernel, conv, timing)| conv_kernel(&name, kernel, &conv, b, timing, peak))
        .collect();
    // One line per convolution: its three kernels.
    for layer in conv_kernels.chunk_by(|a, b| a.layer == b.layer) {
        let k = &layer[0];
        let each: Vec<String> = layer
            .iter()
            .map(|k| {
                format!(
                    "{} {:.1} us {:.1} GFLOP/s ({:.0}%)",
                    k.kernel,
                    k.median_us,
                    k.gflops,
                    100.0 * k.fraction_of_peak
                )
            })
            .collect();
        say(format!(
            "  conv {} {:?} -> {:?} (kernel {}, stride {}, pad {}), {b} samples, {:.3} MFLOP per kernel, 1 thread: {}",
            k.layer,
            k.input,
            k.output,
            k.kernel_size,
            k.stride,
            k.pad,
            k.mflop,
            each.join(", ")
        ));
    }
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
        system: config.system_text(),
        sizes,
        batch_size: t.batch_size,
        solver: config.solver.method.name().to_string(),
        precision: config.solver.precision.name().to_string(),
        batches: s.batches,
        training,
        residual_kernel: KernelThroughput {
            samples: b,
            median_us: median * 1e6,
            mflop: flop / 1e6,
            gflops: residual_gflops,
            fraction_of_peak: residual_gflops / peak,
        },
        conv_kernels,
        dgemm_peak_gflops: peak,
    })
}

/// The median wall time (seconds) of `repeats` calls of `f` on the calling thread, after
/// one untimed call, and the product FLOPs of one call (counted in that first call).
fn median_time<T>(repeats: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    let before = product_flop();
    std::hint::black_box(f());
    let flop = (product_flop() - before) as f64;
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], flop)
}

/// The row of one conv kernel: its median time and product FLOPs against the dgemm `peak`.
fn conv_kernel(
    layer: &str,
    kernel: &str,
    conv: &Conv2d,
    samples: usize,
    (median, flop): (f64, f64),
    peak: f64,
) -> ConvKernelThroughput {
    ConvKernelThroughput {
        layer: layer.to_string(),
        kernel: kernel.to_string(),
        input: [conv.in_c, conv.h, conv.w],
        output: [conv.out_c, conv.out_h(), conv.out_w()],
        kernel_size: conv.k,
        stride: conv.stride,
        pad: conv.pad,
        samples,
        median_us: median * 1e6,
        mflop: flop / 1e6,
        gflops: flop / median / 1e9,
        fraction_of_peak: flop / median / 1e9 / peak,
    }
}
