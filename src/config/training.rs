//! `[training]`: the optimizer, its schedule, epochs and batches.

use crate::optim::{OptimizerKind, OptimizerSettings, Schedule};
use serde::{Deserialize, Serialize};

/// Learning-rate schedule by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Constant,
    /// Cosine decay to `min_lr_factor * learning_rate` over all training steps (reference).
    Cosine,
}

/// What a non-finite optimizer step (gradient, new parameter or moment) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum OnNonFinite {
    /// Stop training with an error naming the tensor and the batch (nothing is written).
    #[default]
    Stop,
    /// Leave that batch's update out (the state before it is kept) and count it.
    Skip,
}

/// `[training]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    pub optimizer: OptimizerKind,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// Global gradient-norm clipping; 0 = off.
    pub clip_norm: f64,
    /// Bound on ||W||_2 of the recurrent weights, enforced after every optimizer step; 0 = off.
    pub spectral_bound: f64,
    pub schedule: ScheduleKind,
    pub min_lr_factor: f64,
    pub epochs: usize,
    pub batch_size: usize,
    /// Evaluate on the test split every this many epochs (and after the last).
    pub eval_every: usize,
    /// Seed of the mini-batch order.
    pub seed: u64,
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// Samples of the fixed diagnostics batch checked at the end of every epoch (the first
    /// ones of the test split, or of the training split without a test split); 0 = off.
    pub diagnostics_samples: usize,
    /// A non-finite optimizer step: stop (default) or skip the batch.
    pub on_non_finite: OnNonFinite,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            optimizer: OptimizerKind::Adam,
            learning_rate: 0.03,
            weight_decay: 0.0,
            momentum: 0.0,
            clip_norm: 0.0,
            spectral_bound: 0.0,
            schedule: ScheduleKind::Cosine,
            min_lr_factor: 0.1,
            epochs: 10,
            batch_size: 64,
            eval_every: 1,
            seed: 0,
            threads: 0,
            diagnostics_samples: 64,
            on_non_finite: OnNonFinite::Stop,
        }
    }
}

impl TrainingConfig {
    /// The optimizer settings for `total_steps` optimizer steps.
    pub fn optimizer_settings(&self, total_steps: usize) -> OptimizerSettings {
        OptimizerSettings {
            kind: self.optimizer,
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            momentum: self.momentum,
            clip_norm: (self.clip_norm > 0.0).then_some(self.clip_norm),
            schedule: match self.schedule {
                ScheduleKind::Constant => Schedule::Constant,
                ScheduleKind::Cosine => Schedule::Cosine {
                    total_steps: total_steps.max(1),
                    min_factor: self.min_lr_factor,
                },
            },
            ..OptimizerSettings::default()
        }
    }
}
