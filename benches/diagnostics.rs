//! Cost of the per-epoch basin and stability diagnostics against the epoch they follow, on the
//! default run (`lcsim train` without flags: digits, LCP-DI RNN-64, 64 diagnostics samples).
//!
//! Run with `cargo bench --bench diagnostics`. After training one epoch from the default
//! initial weights (so the network is the one the diagnostics of epoch 1 see), it times, one
//! after the other and three times each on one thread, a whole training epoch
//! ([`lcsim::train::time_batches`] over all mini-batches) and one [`diagnose`] of the fixed
//! batch, and prints the medians and their ratio: the share of wall time the diagnostics add.

use lcsim::config::Config;
use lcsim::train::diagnostics::diagnose;
use lcsim::train::TrainingState;
use lcsim::train::{diagnostics_batch, load_split, thread_pool, time_batches, train, Observer};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

struct Quiet;
impl Observer for Quiet {}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut config = Config::load(None, &[]).expect("the default config");
    config.training.threads = 1;
    let data = load_split(&config).expect("digits");
    let batches = data.train.len().div_ceil(config.training.batch_size);
    let (n_x, n_y) = (data.train.n_inputs(), data.train.n_classes);
    let fresh = TrainingState::new(&config, n_x, n_y, batches).expect("a network");
    let mut one = config.clone();
    one.training.epochs = 1;
    one.training.diagnostics_samples = 0;
    let (state, _) = train(&one, &data, fresh, &mut Quiet, &AtomicBool::new(false)).unwrap();
    let (x, t) = diagnostics_batch(&config, &data).expect("diagnostics on by default");
    let pool = thread_pool(1).unwrap();
    let (mut epoch, mut diag) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let timing = time_batches(&config, &data, state.clone(), batches, 1).unwrap();
        epoch.push(timing.seconds);
        let start = Instant::now();
        let d = pool
            .install(|| diagnose(&config, &state.net, state.feedback.as_ref(), &x, &t))
            .unwrap();
        diag.push(start.elapsed().as_secs_f64());
        eprintln!("diagnostics: {:?}", d.summary());
    }
    let (e, d) = (median(epoch), median(diag));
    println!(
        "training epoch {e:.3} s, diagnostics of {} samples {d:.3} s: +{:.1} % per epoch (1 thread, medians of 3)",
        x.ncols(),
        100.0 * d / e
    );
}
