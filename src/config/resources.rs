//! Resources a config needs, estimated before anything is allocated or written: the memory
//! of the model (with its optimizer moments, gradient and copies), the data and the solver
//! histories, refused above [`MEMORY_CAP_BYTES`] or the machine's available memory.

use super::{Config, ModelKind};
use crate::data::{DataSource, CIFAR10_RECORDS_PER_FILE, CIFAR10_TRAIN_FILES};
use crate::error::{LcsimError, Result};

/// The documented cap on the estimate (64 GiB), whatever the machine has.
pub const MEMORY_CAP_BYTES: f64 = 64.0 * 1024.0 * 1024.0 * 1024.0;

/// Copies of the parameters a training run holds at once: the network, the epoch's trial
/// copy, a skip backup, Adam's two moments, the gradient and the checkpoint being written.
const PARAMETER_COPIES: f64 = 7.0;

impl Config {
    /// (inputs, classes) of `[data]`'s source.
    fn data_shape(&self) -> (f64, f64) {
        match self.data.source {
            DataSource::Mnist | DataSource::Digits | DataSource::Cifar10 => {
                let pixels = self.data.source.image_shape().map_or(0, |s| s.len());
                (pixels as f64, 10.0)
            }
            DataSource::Xor | DataSource::TwoMoons => (2.0, 2.0),
            DataSource::Sinusoid => {
                let m = self.meta_settings();
                (2.0 * m.support as f64, 2.0 * m.query as f64)
            }
            DataSource::FewshotMnist | DataSource::FewshotDigits => {
                let m = self.meta_settings();
                let point = self.learner().map_or(0, |l| l.input_dim() + l.output_dim()) as f64;
                let per_task = |k: usize| (m.ways * k) as f64 * point;
                (per_task(m.support), per_task(m.query))
            }
        }
    }

    /// Estimated peak memory in bytes (f64 entries, 8 bytes each):
    /// `8 [copies * P + N (n_x + n_y) + B (m_anderson + k_stability + 4) d]`, with P the
    /// parameters, N the synthetic samples, meta tasks or CIFAR-10 images (the standard
    /// 50,000 + 10,000 or the limits), B the batch and d the controlled state.
    pub fn memory_estimate(&self) -> f64 {
        let (n_x, n_y) = self.data_shape();
        let hidden: Vec<f64> = self.model.hidden.iter().map(|&h| h as f64).collect();
        let units: f64 = hidden.iter().sum();
        let params = match self.model.kind {
            ModelKind::Rnn => n_x * units + units * units + units * n_y + n_y * n_y + units + n_y,
            ModelKind::Ff => {
                let mut sizes = vec![n_x];
                sizes.extend(&hidden);
                sizes.push(n_y);
                sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
            }
            ModelKind::Meta => self.learner().map_or(0, |m| m.num_params()) as f64,
            ModelKind::Conv | ModelKind::Deq => self.conv_system_sizes().map_or(0, |s| s.0) as f64,
        };
        let samples = match self.data.source {
            DataSource::Xor | DataSource::TwoMoons => self.data.synthetic_samples as f64,
            DataSource::Sinusoid | DataSource::FewshotMnist | DataSource::FewshotDigits => {
                let m = self.meta_settings();
                (m.train_tasks + m.test_tasks) as f64
            }
            // The standard files' records (50,000 training, 10,000 test), or the limits.
            DataSource::Cifar10 => {
                let kept = |limit: usize, all: usize| if limit > 0 { limit.min(all) } else { all };
                let per_file = CIFAR10_RECORDS_PER_FILE;
                (kept(self.data.train_limit, CIFAR10_TRAIN_FILES.len() * per_file)
                    + kept(self.data.test_limit, per_file)) as f64
            }
            _ => 0.0,
        };
        let state = match self.model.kind {
            // phi, the integral controller and e: each the learner's size.
            ModelKind::Meta => 3.0 * params,
            // phi, e (the same rows) and the readout's integral controller.
            ModelKind::Conv | ModelKind::Deq => {
                3.0 * self.conv_system_sizes().map_or(0, |s| s.1) as f64
            }
            _ => 3.0 * (units + n_y),
        };
        let s = &self.solver;
        let histories = s.anderson.memory as f64 + s.accelerated.stability.dim as f64 + 4.0;
        let batch = self.training.batch_size as f64;
        8.0 * (PARAMETER_COPIES * params + samples * (n_x + n_y) + batch * histories * state)
    }

    /// Refuses a config whose [`Config::memory_estimate`] exceeds the cap or the memory
    /// available on this machine (`MemAvailable` of /proc/meminfo, where readable).
    pub fn check_resources(&self) -> Result<()> {
        check_memory(
            "the run",
            self.memory_estimate(),
            "model.hidden, [conv], [deq], data.synthetic_samples, data.train_limit, training.batch_size, solver.anderson_memory, solver.stability_dim",
        )
    }
}

/// Refuses an `estimate` (bytes) of what `task` needs above [`MEMORY_CAP_BYTES`] or the
/// memory available on this machine; `keys` name what to make smaller.
pub fn check_memory(task: &str, estimate: f64, keys: &str) -> Result<()> {
    let (limit, what) = match available_memory() {
        Some(a) if a < MEMORY_CAP_BYTES => (a, "the memory available on this machine"),
        _ => (MEMORY_CAP_BYTES, "lcsim's cap"),
    };
    if estimate > limit {
        return Err(LcsimError::Resources {
            task: task.into(),
            estimate: gib(estimate),
            limit: gib(limit),
            what: what.into(),
            keys: keys.into(),
        });
    }
    Ok(())
}

fn gib(bytes: f64) -> String {
    format!("{:.3} GiB", bytes / (1024.0 * 1024.0 * 1024.0))
}

/// `MemAvailable` in bytes, when /proc/meminfo says it.
fn available_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}
